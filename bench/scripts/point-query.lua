-- wrk script: Convex's JSON RPC point query `users:getUserById` on a random seeded user
-- (`seed-0 .. seed-<SEEDED-1>`, from `bench prepare-users` or `bench drive --seed`).
-- Usage: SEEDED=10000 wrk -t1 -c64 -d10s -s point-query.lua http://127.0.0.1:PORT
local seeded = tonumber(os.getenv("SEEDED") or "1000")

wrk.method = "POST"
wrk.path = "/api/query"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

request = function()
  local body = string.format(
    '{"path":"users:getUserById","format":"json","args":[{"userId":"seed-%d"}]}',
    math.random(0, seeded - 1))
  return wrk.format(nil, nil, nil, body)
end
