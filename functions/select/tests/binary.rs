//! The select binary as Lambda runs it: against a fake runtime API on 127.0.0.1, one invocation,
//! its response posted back, and its stdout — what Lambda sends to CloudWatch Logs — as JSON
//! lines carrying the request id, plus the invocation's embedded-metric-format line. One run
//! needs no AWS call (an `s3:TestEvent`); the other sends to SQS on the moto server the tests
//! use, with the configuration the functions build from Lambda's environment. With no settings
//! at all, a selector dry run is still answered and anything else is told why the function
//! cannot start.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};

const REQUEST_ID: &str = "5f1c0c4e-6a3e-4d43-9b1e-logs-test";

/// Reads one HTTP request: its request line and its body (by Content-Length); None when the
/// client closed the connection.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut length = 0;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    Some((line.trim_end().to_owned(), body))
}

/// Serves one invocation of `payload`, then reports what the function posted back.
fn fake_runtime(listener: TcpListener, payload: Vec<u8>, posted: mpsc::Sender<(String, Vec<u8>)>) {
    let mut invoked = false;
    for stream in listener.incoming() {
        let mut stream = stream.unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        while let Some((line, body)) = read_request(&mut reader) {
            if line.starts_with("GET /2018-06-01/runtime/invocation/next") {
                if invoked {
                    // The second poll: hold it, as Lambda does between invocations.
                    std::thread::sleep(Duration::from_secs(30));
                    return;
                }
                invoked = true;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Lambda-Runtime-Aws-Request-Id: {REQUEST_ID}\r\n\
                     Lambda-Runtime-Deadline-Ms: 4102444800000\r\n\
                     Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:111122223333:function:select\r\n\
                     Content-Length: {}\r\n\r\n",
                    payload.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&payload).unwrap();
            } else {
                stream
                    .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                    .unwrap();
                let _ = posted.send((line, body));
            }
        }
    }
}

/// What one invocation of the select binary gave back.
struct Invocation {
    /// The request line the function posted its result with, and the body.
    posted: (String, Vec<u8>),
    stdout: String,
}

impl Invocation {
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }

    /// The log line whose message is `message`, which must carry the request id.
    fn log_line(&self, message: &str) -> Value {
        let line = self
            .lines()
            .into_iter()
            .find(|l| l["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no log line {message:?}:\n{}", self.stdout));
        assert_eq!(line["span"]["requestId"], REQUEST_ID, "{line}");
        line
    }

    fn emf(&self) -> Value {
        self.lines()
            .into_iter()
            .find(|l| l["_aws"]["CloudWatchMetrics"].is_array())
            .unwrap_or_else(|| panic!("no EMF line:\n{}", self.stdout))
    }

    fn response(&self) -> Value {
        let (line, body) = &self.posted;
        assert_eq!(
            line,
            &format!("POST /2018-06-01/runtime/invocation/{REQUEST_ID}/response HTTP/1.1"),
            "stdout:\n{}",
            self.stdout
        );
        serde_json::from_slice(body).unwrap()
    }
}

/// Runs the select binary for one invocation of `payload` with Lambda's environment (region
/// and credentials included) plus `env`.
fn invoke(payload: Vec<u8>, env: &[(&str, &str)]) -> Invocation {
    let mut all = vec![
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_SESSION_TOKEN", "testing"),
    ];
    all.extend_from_slice(env);
    invoke_bare(payload, &all)
}

/// Runs the select binary with the runtime API's variables and `env` only: no region, no
/// credentials, no settings, as from a bare shell under `cargo lambda watch`.
fn invoke_bare(payload: Vec<u8>, env: &[(&str, &str)]) -> Invocation {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || fake_runtime(listener, payload, tx));

    let mut command = Command::new(env!("CARGO_BIN_EXE_trailwatch-select"));
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "select")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let posted = rx.recv_timeout(Duration::from_secs(30));
    // Let the lines written after the response reach the pipe, then stop the function.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let posted = posted.unwrap_or_else(|e| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        panic!("no response posted ({e}); stdout:\n{stdout}\nstderr:\n{stderr}")
    });
    Invocation { posted, stdout }
}

fn event_file(name: &str) -> Vec<u8> {
    let path = format!("{}/../../events/select/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn a_test_event_is_acknowledged_with_json_logs_and_an_emf_line() {
    let run = invoke(
        event_file("sqs-s3-test-event.json"),
        &[
            // Nothing listens there: the test event must not need AWS.
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
            (
                "TRAILWATCH_DELIVERY_QUEUE_URL",
                "http://127.0.0.1:1/1/delivery",
            ),
            (
                "TRAILWATCH_INSIGHTS_QUEUE_URL",
                "http://127.0.0.1:1/1/insights",
            ),
        ],
    );
    assert_eq!(run.response()["batchItemFailures"], json!([]));
    assert_eq!(
        run.log_line("message acknowledged and ignored")["level"],
        "INFO"
    );
    assert_eq!(run.emf()["Function"], "select");
}

#[test]
fn a_selector_dry_run_is_answered_with_no_settings_at_all() {
    let run = invoke_bare(event_file("dry-run.json"), &[]);
    let answer = run.response();
    assert_eq!(
        (answer["kept"].clone(), answer["dropped"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(answer["decisions"][1]["reason"], "not_selected", "{answer}");
}

/// The error the function posted: (errorType, errorMessage).
fn error_of(run: &Invocation) -> (String, String) {
    let (line, body) = &run.posted;
    assert_eq!(
        line,
        &format!("POST /2018-06-01/runtime/invocation/{REQUEST_ID}/error HTTP/1.1"),
        "stdout:\n{}",
        run.stdout
    );
    let error: Value = serde_json::from_slice(body).unwrap();
    let text = |k: &str| error[k].as_str().unwrap_or_default().to_owned();
    (text("errorType"), text("errorMessage"))
}

#[test]
fn without_its_settings_every_other_invocation_is_told_why_the_function_cannot_start() {
    let bare = invoke_bare(event_file("sqs-s3-notification.json"), &[]);
    let (error_type, message) = error_of(&bare);
    assert_eq!(error_type, "trailwatch.Configuration");
    assert!(
        message.contains("cannot start") && message.contains("AWS_REGION"),
        "{message}"
    );

    let no_queues = invoke(event_file("sqs-s3-notification.json"), &[]);
    let (error_type, message) = error_of(&no_queues);
    assert_eq!(error_type, "trailwatch.Configuration");
    assert!(
        message.contains("TRAILWATCH_DELIVERY_QUEUE_URL"),
        "{message}"
    );
}

/// The moto server the tests use (see tests/aws/support.rs).
fn moto_endpoint() -> String {
    std::env::var("TRAILWATCH_TEST_ENDPOINT")
        .or_else(|_| {
            let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/moto.endpoint");
            std::fs::read_to_string(file).map(|s| s.trim().to_owned())
        })
        .expect("no moto server: run the tests with scripts/test.sh (or scripts/moto.sh start)")
}

#[tokio::test]
async fn records_reach_the_delivery_queue_through_the_lambda_environment_configuration() {
    let endpoint = moto_endpoint();
    let sdk = trailwatch_aws::config_loader()
        .endpoint_url(&endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = format!("select-binary-{}", std::process::id());
    let queue = sqs.create_queue().queue_name(&name).send().await.unwrap();
    let queue_url = queue.queue_url().unwrap().to_owned();

    let payload = event_file("direct-records.json");
    let sent: Value = serde_json::from_slice(&payload).unwrap();
    let sent_ids: Vec<&str> = sent["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["eventID"].as_str().unwrap())
        .collect();
    let run = tokio::task::spawn_blocking({
        let (endpoint, queue_url) = (endpoint.clone(), queue_url.clone());
        move || {
            invoke(
                payload,
                &[
                    ("AWS_ENDPOINT_URL", &endpoint),
                    ("TRAILWATCH_DELIVERY_QUEUE_URL", &queue_url),
                    ("TRAILWATCH_INSIGHTS_QUEUE_URL", &queue_url),
                    // Records in the payload: as a stack with IngestFromEventBridge=true.
                    ("TRAILWATCH_ACCEPT_RECORDS", "true"),
                ],
            )
        }
    })
    .await
    .unwrap();
    // A direct invocation answers null when every record was handed on.
    assert_eq!(run.response(), Value::Null, "stdout:\n{}", run.stdout);
    let done = run.log_line("select done");
    assert_eq!(done["fields"]["records_read"], sent_ids.len());
    assert_eq!(run.emf()["Function"], "select");

    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .send()
        .await
        .unwrap();
    let mut delivered = Vec::new();
    for message in received.messages() {
        let body: Value = serde_json::from_str(message.body().unwrap()).unwrap();
        for record in body["records"].as_array().unwrap() {
            delivered.push(record["eventID"].as_str().unwrap().to_owned());
        }
    }
    delivered.sort();
    let mut kept: Vec<&str> = sent_ids.clone();
    kept.sort();
    kept.dedup();
    assert_eq!(delivered, kept, "every record of the default trail, once");
    sqs.delete_queue()
        .queue_url(&queue_url)
        .send()
        .await
        .unwrap();
}
