//! A real headless Chromium for the UI tests, driven over WebDriver (Debian's `chromedriver`)
//! with `fantoccini`, plus the few DevTools commands WebDriver lacks (clipboard permission,
//! dark mode, full-page screenshots), sent through chromedriver's `goog/cdp/execute`.
//!
//! Each [`Browser`] has its own chromedriver on an ephemeral port and a fresh profile in a
//! temp dir, with the flags that keep Chromium off the network (the machine has none; without
//! them it tries to reach Google). A browser that cannot start fails the test loudly.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::elements::Element;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The Chromium binary: `WEIR_CHROMIUM`, else Debian's.
fn chromium() -> String {
    std::env::var("WEIR_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// The chromedriver binary: `WEIR_CHROMEDRIVER`, else Debian's.
fn chromedriver() -> String {
    std::env::var("WEIR_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into())
}

/// A command chromedriver has beyond the WebDriver standard: a POST under the session.
#[derive(Debug)]
struct SessionPost {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for SessionPost {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or(""),
            self.path
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// A headless Chromium with its chromedriver, closed when dropped.
pub struct Browser {
    pub client: Client,
    driver: Child,
    /// Every URL requested so far (the performance log hands each entry out once).
    requested: std::sync::Mutex<Vec<String>>,
    _profile: tempfile::TempDir,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver and a Chromium session; screenshots go to
    /// `<target>/ui-screenshots/<test>/`.
    pub async fn start(test: &str) -> Browser {
        use std::os::unix::process::CommandExt as _;
        // A process group of its own, so that dropping the browser ends chromedriver and the
        // Chromium it started, even when a test panics before closing the session.
        let mut driver = Command::new(chromedriver())
            .arg("--port=0")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}); install Debian's chromium and chromium-driver \
                     (tests/run.sh does)",
                    chromedriver()
                )
            });
        let stdout = driver.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = line
                    .split("started successfully on port ")
                    .nth(1)
                    .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
                {
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{} did not start", chromedriver()));
        let profile = tempfile::tempdir().expect("temp dir");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium(), "args": args }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "performance": "ALL" }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| panic!("Chromium did not start ({}): {e}", chromium()));
        let shots = crate::target_dir().join("ui-screenshots").join(test);
        std::fs::create_dir_all(&shots).expect("screenshot folder");
        Browser {
            client,
            driver,
            requested: std::sync::Mutex::new(Vec::new()),
            _profile: profile,
            shots,
        }
    }

    /// A DevTools command, through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.client
            .issue_cmd(SessionPost {
                path: "goog/cdp/execute",
                body: json!({ "cmd": cmd, "params": params }),
            })
            .await
            .unwrap_or_else(|e| panic!("DevTools {cmd}: {e}"))
    }

    /// Lets pages of `origin` read and write the clipboard.
    pub async fn grant_clipboard(&self, origin: &str) {
        self.cdp(
            "Browser.grantPermissions",
            json!({ "origin": origin, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"] }),
        )
        .await;
    }

    /// Every URL the browser requested since it started (from its performance log).
    pub async fn requested_urls(&self) -> Vec<String> {
        let log = self
            .client
            .issue_cmd(SessionPost {
                path: "se/log",
                body: json!({ "type": "performance" }),
            })
            .await
            .unwrap_or_else(|e| panic!("reading the performance log: {e}"));
        let mut urls = Vec::new();
        for entry in log.as_array().into_iter().flatten() {
            let Some(message) = entry["message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            else {
                continue;
            };
            let message = &message["message"];
            if message["method"] == "Network.requestWillBeSent"
                && let Some(url) = message["params"]["request"]["url"].as_str()
            {
                urls.push(url.to_owned());
            }
        }
        let mut requested = self.requested.lock().unwrap_or_else(|e| e.into_inner());
        requested.extend(urls);
        requested.clone()
    }

    /// Asserts that every network request so far (`http:`, `https:`, `ws:`, `wss:`) went to
    /// `origin`, and that there were some. The browser's own pages (`chrome:`, its first empty
    /// tab) and what stays in the page (`blob:`, `data:`) are not network requests.
    pub async fn assert_only_origin(&self, origin: &str) {
        let urls = self.requested_urls().await;
        assert!(!urls.is_empty(), "the performance log shows no request");
        let network = |u: &&String| {
            ["http:", "https:", "ws:", "wss:"]
                .iter()
                .any(|scheme| u.starts_with(scheme))
        };
        assert!(
            urls.iter().filter(network).count() > 0,
            "no network request in the performance log: {urls:?}"
        );
        let others: Vec<&String> = urls
            .iter()
            .filter(network)
            .filter(|u| !(u.starts_with(&format!("{origin}/")) || u.as_str() == origin))
            .collect();
        assert!(
            others.is_empty(),
            "requests to other origins than {origin}: {others:?}"
        );
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// Waits up to `deadline` for an element matching `css` whose text contains `text`.
    pub async fn wait_text(&self, css: &str, text: &str, deadline: Duration) -> Element {
        let start = Instant::now();
        loop {
            if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
                for element in elements {
                    if let Ok(shown) = element.text().await
                        && shown.contains(text)
                    {
                        return element;
                    }
                }
            }
            if start.elapsed() > deadline {
                let body = self.body_text().await;
                panic!("no '{css}' with text {text:?} after {deadline:?}; the page shows:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for an element matching `css`.
    pub async fn wait(&self, css: &str, deadline: Duration) -> Element {
        self.wait_text(css, "", deadline).await
    }

    /// Waits for an element matching `css` and clicks it.
    pub async fn click(&self, css: &str, deadline: Duration) {
        self.wait(css, deadline)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(e) => format!("(no body: {e})"),
        }
    }

    /// Runs `script` (a function body; `arguments` as given) and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Runs an async script: the function body gets a callback as its last argument.
    pub async fn eval_async(&self, script: &str) -> Value {
        self.client
            .execute_async(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script {script:?}: {e}"))
    }

    /// Saves a full-page screenshot of what the page shows, in light and in dark mode:
    /// `<name>-light.png` and `<name>-dark.png`.
    pub async fn screenshot(&self, name: &str) {
        for scheme in ["light", "dark"] {
            self.cdp(
                "Emulation.setEmulatedMedia",
                json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
            )
            .await;
            let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
            let size = &metrics["cssContentSize"];
            let (width, height) = (
                size["width"].as_f64().unwrap_or(1280.0),
                size["height"].as_f64().unwrap_or(900.0),
            );
            let shot = self
                .cdp(
                    "Page.captureScreenshot",
                    json!({
                        "format": "png",
                        "captureBeyondViewport": true,
                        "clip": { "x": 0, "y": 0, "width": width, "height": height.min(16000.0), "scale": 1 },
                    }),
                )
                .await;
            let png = base64::engine::general_purpose::STANDARD
                .decode(shot["data"].as_str().unwrap_or_default())
                .expect("a base64 screenshot");
            assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
            let path = self.shots.join(format!("{name}-{scheme}.png"));
            std::fs::write(&path, png).expect("write the screenshot");
        }
        self.cdp("Emulation.setEmulatedMedia", json!({ "features": [] }))
            .await;
    }

    /// Sets the window to `width` x `height` CSS pixels (a phone: 360 wide).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("resize: {e}"));
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The group holds chromedriver and the Chromium it started; its id is chromedriver's.
        if let Ok(group) = libc::pid_t::try_from(self.driver.id()) {
            // SAFETY: signalling the process group this test created.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.driver.wait();
    }
}
