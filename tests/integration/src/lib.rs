//! Helpers for the integration tests: connections to the clusters scripts/test.sh starts.

use std::sync::{Arc, Mutex};

pub use postgres::{error::SqlState, Client, Config, NoTls};

/// The port of cluster `name` ("A", "B" or "C") from `PGMG_PORT_<name>`.
pub fn port(name: &str) -> u16 {
    let var = format!("PGMG_PORT_{name}");
    std::env::var(&var)
        .unwrap_or_else(|_| panic!("{var} is not set: run these tests through scripts/test.sh"))
        .parse()
        .expect("port number")
}

/// A connection as `user` to cluster `name`, collecting every NOTICE/WARNING it receives.
pub fn connect_as(name: &str, user: &str, app: &str) -> (Client, Arc<Mutex<Vec<postgres::error::DbError>>>) {
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    let client = Config::new()
        .host("/tmp")
        .port(port(name))
        .user(user)
        .dbname("postgres")
        .application_name(app)
        .notice_callback(move |n| sink.lock().unwrap().push(n))
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("connect to cluster {name} as {user}: {e}"));
    (client, notices)
}

pub fn connect(name: &str) -> Client {
    connect_as(name, "postgres", "integration-test").0
}

/// The server's error for a statement that must fail.
pub fn expect_db_error(result: Result<impl std::fmt::Debug, postgres::Error>) -> postgres::error::DbError {
    match result {
        Ok(v) => panic!("statement was expected to fail, it returned {v:?}"),
        Err(e) => e.as_db_error().cloned().unwrap_or_else(|| panic!("not a server error: {e}")),
    }
}
