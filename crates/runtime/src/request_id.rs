//! [`RequestId`]: one id per client request, made by the router (or whoever calls the runtime),
//! carried in [`CallRequest`](crate::CallRequest) and shown in logs and error texts
//! (`[Request ID: …]`), so a client's error can be found in the server log.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// A fresh random id: 16 hex digits are plenty to find a line in a log.
    pub fn generate() -> RequestId {
        RequestId(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
