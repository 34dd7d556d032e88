-- wrk script of `bench --wrk` (compiled into the bench binary) and of bench/scripts/profile.sh:
-- requests in each peer's dialect, and one machine-readable WRK_RESULT line from `done`.
-- Arguments after `--`: dialect (convex | convex-js | pocketbase; convex-js calls the pushed
-- JavaScript twins `usersjs:*` of bench/scripts/js-vs-rust.sh), mix (create | read | webhook), tag (prefix
-- of created user ids), seeded users (reads pick seed-0 .. seed-<n-1>), deliveries file (webhook:
-- "<file>.<thread>" holds "<svix-id>\t<timestamp>\t<signature>\t<body>" lines).
-- Usage: wrk -t2 -c64 -d8s -s bench.lua http://127.0.0.1:PORT -- convex create w 5000
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local counter = 0
local deliveries = {}
function init(args)
  dialect, mix, tag, seeds = args[1], args[2], args[3], tonumber(args[4])
  functions = dialect == "convex-js" and "usersjs" or "users"
  math.randomseed(os.time() * 1000 + tid)
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Host"] = "127.0.0.1"
  if mix == "webhook" then
    -- One file per thread: "<svix-id>\t<timestamp>\t<signature>\t<body>" per line.
    for line in io.lines(args[5] .. "." .. tid) do
      local id, ts, sig, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      table.insert(deliveries, wrk.format("POST", "/clerk-users-webhook",
        { ["svix-id"] = id, ["svix-timestamp"] = ts, ["svix-signature"] = sig }, body))
    end
  end
end

local function convex(kind, path, args)
  return wrk.format("POST", "/api/" .. kind, nil,
    '{"path":"' .. path .. '","format":"json","args":[' .. args .. ']}')
end

function request()
  counter = counter + 1
  if mix == "create" then
    local uid = tag .. "-" .. tid .. "-" .. counter
    local fields = '{"userId":"' .. uid .. '","name":"Bench User ' .. counter ..
      '","email":"' .. uid .. '@bench.example"}'
    if dialect == "pocketbase" then
      return wrk.format("POST", "/api/collections/users/records", nil, fields)
    end
    return convex("mutation", functions .. ":updateUser", fields)
  elseif mix == "webhook" then
    -- Past the end, repeats are answered as duplicates; the bench makes enough for the run.
    return deliveries[math.min(counter, #deliveries)]
  end
  local uid = "seed-" .. math.random(0, seeds - 1)
  if dialect == "pocketbase" then
    return wrk.format("GET", "/api/collections/users/records?filter=userId%3D%27" .. uid ..
      "%27&perPage=1&skipTotal=1")
  end
  return convex("query", functions .. ":getUserById", '{"userId":"' .. uid .. '"}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK_RESULT %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout, latency:percentile(50),
    latency:percentile(99)))
end
