//! Command line of `messenger-bench-nats`: the `fanout` flags it shares
//! (names and defaults as `messenger-bench fanout`), parsed with lexopt.

pub(crate) struct Args {
    pub(crate) server: String,
    pub(crate) subscribers: usize,
    pub(crate) publishers: usize,
    pub(crate) duration: f64,
    /// Messages per second over all publishers; `None` = closed loop.
    pub(crate) rate: Option<f64>,
    pub(crate) payload: usize,
    pub(crate) server_pid: Option<u32>,
    pub(crate) json: Option<String>,
}

pub(crate) const USAGE: &str = "usage: messenger-bench-nats --server HOST:PORT [--subscribers K] \
    [--publishers P] [--duration SECS] [--rate MSG/S] [--payload BYTES] [--server-pid PID] [--json FILE]";

/// The arguments, or `None` for `--help`.
pub(crate) fn parse() -> Result<Option<Args>, String> {
    use lexopt::prelude::*;
    let mut a = Args {
        server: String::new(),
        subscribers: 1,
        publishers: 4,
        duration: 10.0,
        rate: None,
        payload: 64,
        server_pid: None,
        json: None,
    };
    let mut p = lexopt::Parser::from_env();
    let err = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(err)? {
        let name = match arg {
            Long("help") | Short('h') => return Ok(None),
            Long(name) => name.to_owned(),
            other => return Err(other.unexpected().to_string()),
        };
        let v = p.value().map_err(err)?.string().map_err(err)?;
        let num = || v.parse::<f64>().map_err(|e| format!("--{name} '{v}': {e}"));
        match name.as_str() {
            "server" => a.server = v.clone(),
            "subscribers" => a.subscribers = num()? as usize,
            "publishers" => a.publishers = num()? as usize,
            "duration" => a.duration = num()?,
            "rate" => a.rate = Some(num()?).filter(|r| *r > 0.0),
            "payload" => a.payload = num()? as usize,
            "server-pid" => a.server_pid = Some(num()? as u32),
            "json" => a.json = Some(v.clone()),
            _ => return Err(format!("unexpected option '--{name}'")),
        }
    }
    if a.server.is_empty() || a.subscribers == 0 || a.publishers == 0 || a.duration <= 0.0 {
        return Err("--server is required; K, P and the duration must be positive".to_owned());
    }
    Ok(Some(a))
}
