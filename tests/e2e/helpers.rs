//! Starting the application and the binary for tests.

use std::{
    future::{Future, IntoFuture},
    path::Path,
    pin::Pin,
    process::Output,
};

use bot_core::{Backend, store::testing::TestDb};
use imagegpt::{config::Config, startup::Application};
use tokio_util::sync::CancellationToken;

/// A running application on 127.0.0.1 with a random port and a fresh database.
pub struct TestApp {
    pub address: std::net::SocketAddr,
    pub db: TestDb,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// Stops the server and waits for it to finish.
    pub async fn stop(self) -> TestDb {
        self.shutdown.cancel();
        self.server
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        self.db
    }
}

/// How a test's application is started: `spawn_app(backend, test)`, then what it needs
/// (`.env(..)`, `.file(..)`, `.with_telegram(..)`), then `.await`. It runs on a fresh database of
/// `backend` and yields `None` when that backend is not available here.
pub struct AppBuilder {
    backend: Backend,
    test: String,
    env: Vec<(String, String)>,
    file: String,
}

/// The application on a fresh database, with nothing else configured (see [`AppBuilder`]).
pub fn spawn_app(backend: Backend, test: &str) -> AppBuilder {
    AppBuilder {
        backend,
        test: test.to_string(),
        env: Vec::new(),
        file: String::new(),
    }
}

impl AppBuilder {
    /// Adds environment variables (later ones win).
    pub fn env(mut self, pairs: &[(&str, &str)]) -> AppBuilder {
        self.env
            .extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// The configuration file's text.
    pub fn file(mut self, text: &str) -> AppBuilder {
        self.file = text.to_string();
        self
    }

    /// Against a fresh fake Telegram for the bot `token`, everyone welcomed with `credits`;
    /// yields the fake beside the application.
    pub fn with_telegram(self, token: &str, credits: &str) -> WithTelegram {
        WithTelegram {
            app: self,
            token: token.to_string(),
            credits: credits.to_string(),
        }
    }

    async fn start(self) -> Option<TestApp> {
        let db = TestDb::new(self.backend, &self.test).await?;
        let instance = start_on(db.url(), self.env, &self.file).await;
        Some(TestApp {
            address: instance.address,
            db,
            shutdown: instance.shutdown,
            server: instance.server,
        })
    }
}

impl IntoFuture for AppBuilder {
    type Output = Option<TestApp>;
    type IntoFuture = Pin<Box<dyn Future<Output = Option<TestApp>>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.start())
    }
}

/// An [`AppBuilder`] with a fake Telegram (see [`AppBuilder::with_telegram`]).
pub struct WithTelegram {
    app: AppBuilder,
    token: String,
    credits: String,
}

impl IntoFuture for WithTelegram {
    type Output = Option<(fakes::telegram::FakeTelegram, TestApp)>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output>>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let fake = fakes::telegram::FakeTelegram::start(&self.token).await;
            let url = fake.url();
            // The fake's own settings come first, so that the test's may replace them.
            let mut env = vec![
                ("TELEGRAM_BOT_TOKEN".to_string(), self.token.clone()),
                ("TELEGRAM_API_URL".to_string(), url),
                ("WELCOME_CREDITS".to_string(), self.credits.clone()),
            ];
            env.extend(self.app.env);
            let app = AppBuilder { env, ..self.app }.start().await?;
            Some((fake, app))
        })
    }
}

/// Runs the real `imagegpt` binary in `dir` with only the given environment.
pub fn imagegpt(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_imagegpt"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the binary runs")
}

/// [`imagegpt`] off the test's runtime: an application serving on that runtime goes on running
/// (and hearing the changes the command line makes) while the binary runs, as it does beside an
/// operator's shell. A blocking run would freeze it, and on its wake an update could race the
/// reading of SQLite's change log.
pub async fn imagegpt_beside(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        imagegpt(&dir, &args, &env)
    })
    .await
    .expect("the binary's run ends")
}

/// Standard output and error as text, for assertions.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Another instance of the application on the database of `first` (several instances sharing
/// one PostgreSQL).
pub struct Instance {
    pub address: std::net::SocketAddr,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    /// Asks it to stop (as SIGTERM does) and waits until it has.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server
            .await
            .expect("server task")
            .expect("stopped cleanly");
    }
}

/// Starts one more instance on `first`'s database with the same kind of settings.
pub async fn spawn_instance(first: &TestApp, env: &[(&str, &str)], file: &str) -> Instance {
    spawn_instance_on(first.db.url(), env, file).await
}

/// Starts an instance on the database at `url`.
pub async fn spawn_instance_on(url: &str, env: &[(&str, &str)], file: &str) -> Instance {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    start_on(url, env.collect(), file).await
}

/// The application on the database at `url`, on a free port, with `env` and `file` as its
/// configuration.
async fn start_on(url: &str, env: Vec<(String, String)>, file: &str) -> Instance {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("imagegpt.toml");
    std::fs::write(&path, file).expect("write config");
    let mut pairs = vec![
        ("DATABASE_URL".to_string(), url.to_string()),
        ("HTTP_ADDR".to_string(), "127.0.0.1:0".to_string()),
    ];
    pairs.extend(env);
    let config = Config::load_from(Some(&path), pairs).expect("valid test configuration");
    let app = Application::build(&config)
        .await
        .expect("application builds");
    let address = app.local_addr().expect("bound address");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Instance {
        address,
        shutdown,
        server,
    }
}

/// A child process of the real binary, killed when dropped: a test that fails midway leaves
/// nothing running to load the machine or poll a fake that is gone.
pub struct Process(pub std::process::Child);

impl std::ops::Deref for Process {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Process {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Posts `event` to the application's Stripe webhook at `address`, signed with `secret` now as
/// Stripe signs; the HTTP status.
pub async fn post_stripe_event(address: std::net::SocketAddr, secret: &str, event: &str) -> u16 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    reqwest::Client::new()
        .post(format!("http://{address}/stripe/webhook"))
        .header("Stripe-Signature", fakes::stripe::sign(event, secret, now))
        .body(event.to_string())
        .send()
        .await
        .expect("the webhook answers")
        .status()
        .as_u16()
}
