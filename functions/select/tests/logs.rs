//! The select binary as Lambda runs it: against a fake runtime API on 127.0.0.1, one invocation
//! (an SQS-wrapped `s3:TestEvent`, which needs no AWS call), its response posted back, and its
//! stdout — what Lambda sends to CloudWatch Logs — JSON lines carrying the request id, plus
//! the invocation's embedded-metric-format line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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

#[test]
fn stdout_is_json_lines_with_the_request_id_and_an_emf_line() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let payload = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../events/select/sqs-s3-test-event.json"
    ))
    .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || fake_runtime(listener, payload, tx));

    let mut child = Command::new(env!("CARGO_BIN_EXE_trailwatch-select"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "select")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        // Nothing listens there: the test event must not need AWS.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env(
            "TRAILWATCH_DELIVERY_QUEUE_URL",
            "http://127.0.0.1:1/1/delivery",
        )
        .env(
            "TRAILWATCH_INSIGHTS_QUEUE_URL",
            "http://127.0.0.1:1/1/insights",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let posted = rx.recv_timeout(Duration::from_secs(20));
    // Let the lines written after the response reach the pipe, then stop the function.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let (line, body) = posted.unwrap_or_else(|e| {
        panic!("no response posted ({e}); stdout:\n{stdout}\nstderr:\n{stderr}")
    });

    assert_eq!(
        line,
        format!("POST /2018-06-01/runtime/invocation/{REQUEST_ID}/response HTTP/1.1"),
        "stdout:\n{stdout}"
    );
    let response: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(response["batchItemFailures"], serde_json::json!([]));

    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let ignored = lines
        .iter()
        .find(|l| l["fields"]["message"] == "message acknowledged and ignored")
        .unwrap_or_else(|| panic!("no log line for the test event:\n{stdout}"));
    assert_eq!(ignored["level"], "INFO");
    assert_eq!(ignored["span"]["requestId"], REQUEST_ID, "{ignored}");
    let emf = lines
        .iter()
        .find(|l| l["_aws"]["CloudWatchMetrics"].is_array())
        .unwrap_or_else(|| panic!("no EMF line:\n{stdout}"));
    assert_eq!(emf["Function"], "select");
}
