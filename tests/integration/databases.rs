//! Private database servers for the app store tests: PostgreSQL from the
//! Debian package, started in a temporary directory on an ephemeral
//! loopback port (as the `postgres` user when the tests run as root: the
//! server refuses to run as root), stopped and removed when dropped, also
//! when the test fails. `scripts/test.sh` installs the package when it is
//! missing.

use crate::support::wait_until;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static DIRS: AtomicU32 = AtomicU32::new(0);

/// The database user and its password (a password with `@` and `:` in
/// it, so a URL carrying it is one a careless log line would leak).
pub const DB_USER: &str = "shardcast";
pub const DB_PASSWORD: &str = "pw-n0t-1n-l0gs";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The uid and gid to run a database server as: the named system user
/// when running as root, else ourselves.
fn run_as(user: &str) -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap_or_else(|| panic!("no {user} user: is the database package installed?"));
    let f: Vec<&str> = line.split(':').collect();
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

fn temp_dir(kind: &str, owner: Option<(u32, u32)>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "shardcast-{kind}-{}-{}",
        std::process::id(),
        DIRS.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some((uid, gid)) = owner {
        let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::chown(c.as_ptr(), uid, gid) }, 0);
    }
    dir
}

fn as_user(cmd: &mut Command, owner: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin").join(name))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("{name} not found: install PostgreSQL (Debian package postgresql; scripts/test.sh does)")
    })
}

/// A private PostgreSQL server.
pub struct Postgres {
    pub port: u16,
    dir: PathBuf,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

impl Postgres {
    pub fn start() -> Postgres {
        let owner = run_as("postgres");
        let dir = temp_dir("pg", owner);
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, DB_PASSWORD).unwrap();
        if let Some((uid, gid)) = owner {
            let c = std::ffi::CString::new(pwfile.to_str().unwrap()).unwrap();
            unsafe { libc::chown(c.as_ptr(), uid, gid) };
        }
        let out = as_user(
            Command::new(pg_bin("initdb"))
                .arg("-D")
                .arg(dir.join("data"))
                .args([
                    "-U",
                    DB_USER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .args(["--no-sync", "--no-instructions"]),
            owner,
        )
        .output()
        .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            port: free_port(),
            dir,
            owner,
            child: None,
        };
        pg.resume();
        pg
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn resume(&mut self) {
        let child = as_user(
            Command::new(pg_bin("postgres"))
                .arg("-D")
                .arg(self.dir.join("data"))
                .args(["-p", &self.port.to_string(), "-k"])
                .arg(&self.dir)
                .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            self.owner,
        )
        .spawn()
        .expect("start postgres");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(20), || self.try_sql("SELECT 1").is_ok());
        assert!(up, "postgres did not start on port {}", self.port);
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let stopped = wait_until(Duration::from_secs(10), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// The URL shardcast is given (with the password).
    pub fn url(&self) -> String {
        format!(
            "postgres://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    pub fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(pg_bin("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                DB_USER,
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
            .env("PGPASSWORD", DB_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "3")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Runs SQL; panics with the server's words when it fails.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The config file for shardcast reading its apps from `url`.
pub fn store_config(driver: &str, url: &str, extra: &str) -> String {
    format!("[app_store]\ndriver = \"{driver}\"\nurl = \"{url}\"\n{extra}\n")
}

/// Runs `shardcast app-store init` with the config file `config`.
pub fn run_init(config: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardcast"))
        .arg("--config")
        .arg(config)
        .args(["app-store", "init"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run shardcast app-store init");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A private MariaDB server (MySQL protocol).
pub struct Mariadb {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

fn find_sbin(names: &[&str]) -> PathBuf {
    names
        .iter()
        .flat_map(|n| ["/usr/sbin", "/usr/bin"].map(|d| Path::new(d).join(n)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{names:?} not found: install MariaDB (Debian package mariadb-server; scripts/test.sh does)")
        })
}

impl Mariadb {
    pub fn start() -> Mariadb {
        let root = unsafe { libc::geteuid() } == 0;
        let dir = temp_dir("mariadb", None);
        // Its own temporary directory: installs and servers running at the
        // same time otherwise share /tmp for their temporary tables (one
        // install was seen failing on a temporary table it could not remove).
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("mariadb tmpdir");
        if root {
            let c = std::ffi::CString::new(tmp.to_str().unwrap()).unwrap();
            let (uid, gid) = run_as("mysql").unwrap();
            unsafe { libc::chown(c.as_ptr(), uid, gid) };
        }
        let mut install = Command::new(find_sbin(&["mariadb-install-db", "mysql_install_db"]));
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            // Kernel AIO contexts are a machine-wide pool (fs.aio-max-nr)
            // that parallel tests can use up: plain I/O is enough here.
            .args(["--innodb-use-native-aio=0", "--innodb-buffer-pool-size=16M"]);
        if root {
            install.arg("--user=mysql");
        }
        let out = install.output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if root {
            // The server (as mysql) makes its socket here.
            let c = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
            let (uid, gid) = run_as("mysql").unwrap();
            unsafe { libc::chown(c.as_ptr(), uid, gid) };
        }
        let mut db = Mariadb {
            port: free_port(),
            dir,
            child: None,
        };
        db.resume();
        db.root_sql(&format!(
            "CREATE DATABASE shardcast; CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; \
             GRANT ALL ON shardcast.* TO '{DB_USER}'@'127.0.0.1';"
        ))
        .unwrap();
        db
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub fn resume(&mut self) {
        let mut cmd = Command::new(find_sbin(&["mariadbd", "mysqld"]));
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.dir.join("data").display()))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("pid").display()))
            .arg(format!("--tmpdir={}", self.dir.join("tmp").display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-use-native-aio=0",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--user=mysql");
        }
        self.child = Some(cmd.spawn().expect("start mariadbd"));
        let up = wait_until(Duration::from_secs(30), || {
            self.root_sql("SELECT 1").is_ok()
        });
        assert!(up, "mariadb did not start on port {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let stopped = wait_until(Duration::from_secs(20), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!(
            "mysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/shardcast",
            self.port
        )
    }

    fn root_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(find_sbin(&["mariadb", "mysql"]))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .args(["-uroot", "-N", "-B", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).to_string())
        }
    }

    /// Runs SQL in the `shardcast` database; panics with the server's words.
    pub fn sql(&self, sql: &str) -> String {
        self.root_sql(&format!("USE shardcast; {sql}"))
            .unwrap_or_else(|e| panic!("SQL failed: {e}\n{sql}"))
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
