//! The codec server's HTTP rules, checked in-process against the router: the
//! codec protocol, namespaces, errors, limits, CORS, health and metrics, and
//! every authentication mode (JWT against a JWKS served on loopback, trusted
//! proxy, client certificate names).
#![allow(clippy::unwrap_used, clippy::expect_used)]

// The fixtures live with the binary's tests (cli/tests/support), shared by path.
#[path = "../../cli/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::Algorithm;
use serde_json::json;
use support::server::{AUDIENCE, Answer, Issuer, Keyrings, codec_request, post, router, send};
use support::{key_ids, plain_batch, texts};
use tcodec_keys::ops::{self, Transition};
use tcodec_server::auth::PeerInfo;

const CARD: &str = r#"{"name":"Ada Lovelace","card":"4111 1111 1111 1111"}"#;

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

fn encoding_of(response: &serde_json::Value, i: usize) -> String {
    let enc = response["payloads"][i]["metadata"]["encoding"]
        .as_str()
        .unwrap();
    String::from_utf8(STANDARD.decode(enc).unwrap()).unwrap()
}

#[tokio::test]
async fn encode_then_decode_round_trips_under_any_prefix() {
    let keys = Keyrings::new(&["payments"]);
    let (app, _) = router(&keys.toml(&[("payments", "")]));
    let batch = plain_batch(&[CARD, "\"second\"", ""]);

    let sealed = post(&app, "/api/v1/codec/encode", "payments", None, &batch).await;
    assert_eq!(sealed.status, StatusCode::OK, "{}", sealed.body);
    assert_eq!(sealed.header("content-type"), Some("application/json"));
    let sealed_json = sealed.json();
    assert_eq!(sealed_json["payloads"].as_array().unwrap().len(), 3);
    for i in 0..3 {
        assert_eq!(encoding_of(&sealed_json, i), "binary/tcodec");
    }
    assert!(
        !sealed.body.contains("4111"),
        "ciphertext must not hold the card number"
    );
    assert_eq!(key_ids(&sealed.body), ["k1", "k1", "k1"]);

    // The UI appends ?preserveStorageRefs=true; a different prefix works too.
    let plain = post(
        &app,
        "/decode?preserveStorageRefs=true",
        "payments",
        None,
        &sealed.body,
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.body);
    assert_eq!(texts(&plain.body), [CARD, "\"second\"", ""]);
    assert_eq!(encoding_of(&plain.json(), 0), "json/plain");
}

#[tokio::test]
async fn foreign_payloads_and_unknown_fields_pass_through() {
    let keys = Keyrings::new(&["payments"]);
    let (app, _) = router(&keys.toml(&[("payments", "")]));
    let body = json!({
        "payloads": [
            {"metadata": {"encoding": b64("json/plain")}, "data": b64("\"visible\""), "someFutureField": {"x": 1}},
            {"metadata": {"encoding": b64("binary/null")}, "externalPayloads": [{"sizeBytes": "1024"}]},
        ],
        "topLevelExtra": true,
    })
    .to_string();
    let answer = post(&app, "/decode", "payments", None, &body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["payloads"][0]["someFutureField"], json!({"x": 1}));
    assert_eq!(
        v["payloads"][1]["externalPayloads"],
        json!([{"sizeBytes": "1024"}])
    );
    assert_eq!(v["topLevelExtra"], json!(true));
    assert_eq!(texts(&answer.body)[0], "\"visible\"");

    // An empty batch is an empty batch.
    let empty = post(&app, "/decode", "payments", None, r#"{"payloads":[]}"#).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.json()["payloads"], json!([]));
}

#[tokio::test]
async fn legacy_formats_are_decoded_only_where_the_namespace_allows_them() {
    // `binary/zlib` of the serialized payload {encoding: json/plain, data: "zipped"}.
    let inner = [
        b"\x0a\x16\x0a\x08encoding\x12\x0ajson/plain".as_slice(),
        b"\x12\x08\"zipped\"",
    ]
    .concat();
    let zlib = {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&inner).unwrap();
        z.finish().unwrap()
    };
    let body = json!({"payloads": [
        {"metadata": {"encoding": b64("binary/zlib")}, "data": STANDARD.encode(&zlib)},
    ]})
    .to_string();
    let keys = Keyrings::new(&["shown", "migrating"]);
    let (app, _) = router(&keys.toml(&[
        ("shown", ""),
        ("migrating", "decode_allow = [\"binary/zlib\"]"),
    ]));
    // By default the payload is shown as it is stored, undecoded.
    let shown = post(&app, "/decode", "shown", None, &body).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert_eq!(encoding_of(&shown.json(), 0), "binary/zlib");
    // Where the namespace allows the format, it is decoded.
    let migrating = post(&app, "/decode", "migrating", None, &body).await;
    assert_eq!(migrating.status, StatusCode::OK, "{}", migrating.body);
    assert_eq!(encoding_of(&migrating.json(), 0), "json/plain");
    assert_eq!(texts(&migrating.body)[0], "\"zipped\"");
}

#[tokio::test]
async fn namespaces_select_their_own_keyring() {
    let keys = Keyrings::new(&["payments", "hr"]);
    let (app, _) = router(&keys.toml(&[("payments", ""), ("hr", "")]));
    let sealed = post(&app, "/encode", "payments", None, &plain_batch(&[CARD])).await;
    assert_eq!(sealed.status, StatusCode::OK);

    // hr's keyring has its own k1, a different data key: payments' payload does not open.
    let wrong = post(&app, "/decode", "hr", None, &sealed.body).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST, "{}", wrong.body);
    assert_eq!(wrong.error_code(), "decrypt_failed");
    assert!(!wrong.body.contains("Ada"));

    let unknown = post(&app, "/decode", "marketing", None, &sealed.body).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "unknown_namespace");
    assert!(
        unknown.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("marketing")
    );

    let request = Request::post("/decode")
        .header("content-type", "application/json")
        .body(Body::from(sealed.body.clone()))
        .unwrap();
    let missing = send(&app, request).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.error_code(), "missing_namespace");
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_json_error() {
    let keys = Keyrings::new(&["payments"]);
    let (app, _) = router(&keys.toml(&[("payments", "")]));
    for (body, code) in [
        ("{not json", "malformed_json"),
        (r#"{"payloads": {"a": 1}}"#, "malformed_json"),
        (
            r#"{"payloads": [{"metadata": {"encoding": 5}}]}"#,
            "malformed_json",
        ),
        // A value in the wrong place may be a payload: the error says where, not what.
        (
            r#"{"payloads": [{"metadata": "eyJzc24iOiIwNzgtMDUtMTEyMCJ9"}]}"#,
            "malformed_json",
        ),
        (
            r#"{"payloads": [{"metadata": {"encoding": "%%%"}, "data": ""}]}"#,
            "malformed_base64",
        ),
        (
            r#"{"payloads": [{"data": "not base64!"}]}"#,
            "malformed_base64",
        ),
    ] {
        let answer = post(&app, "/decode", "payments", None, body).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.body
        );
        assert_eq!(answer.error_code(), code, "{body}");
        assert!(!answer.body.contains("eyJzc24i"), "{}", answer.body);
    }

    // A tcodec payload whose ciphertext was altered: 400 naming the payload and key.
    let sealed = post(
        &app,
        "/encode",
        "payments",
        None,
        &plain_batch(&["\"a\"", CARD]),
    )
    .await;
    let mut v = sealed.json();
    let mut data = STANDARD
        .decode(v["payloads"][1]["data"].as_str().unwrap())
        .unwrap();
    let last = data.len() - 1;
    data[last] ^= 1;
    v["payloads"][1]["data"] = json!(STANDARD.encode(&data));
    // Ahead of it, a plaintext payload the codec passes through: the error
    // still names the altered payload by its place in the request.
    v["payloads"][0] = json!({"metadata": {"encoding": b64("json/plain")}, "data": b64("\"a\"")});
    let answer = post(&app, "/decode", "payments", None, &v.to_string()).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.error_code(), "decrypt_failed");
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("payload 1"), "{message}");
    assert!(message.contains("k1"), "{message}");

    // Other paths: 404 with the same error shape.
    let other = post(&app, "/api/upload", "payments", None, "{}").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(other.error_code(), "not_found");
}

#[tokio::test]
async fn disabled_and_destroyed_keys_are_refused_by_index_and_id() {
    let keys = Keyrings::new(&["payments"]);
    let (app, state) = router(&keys.toml(&[("payments", "")]));
    let path = keys.keyring("payments");
    let old = post(
        &app,
        "/encode",
        "payments",
        None,
        &plain_batch(&["\"old\""]),
    )
    .await;
    ops::rotate(&path, &keys.keks(), None).unwrap();
    state.namespaces["payments"].keyring.reload().unwrap();
    let new = post(
        &app,
        "/encode",
        "payments",
        None,
        &plain_batch(&["\"new\""]),
    )
    .await;
    assert_eq!(key_ids(&new.body), ["k2"]);

    // Both versions decode in one batch.
    let both =
        json!({"payloads": [new.json()["payloads"][0], old.json()["payloads"][0]]}).to_string();
    let answer = post(&app, "/decode", "payments", None, &both).await;
    assert_eq!(texts(&answer.body), ["\"new\"", "\"old\""]);

    ops::transition(&path, "k1", Transition::Disable).unwrap();
    state.namespaces["payments"].keyring.reload().unwrap();
    let refused = post(&app, "/decode", "payments", None, &both).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.error_code(), "key_refused");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("payload 1") && message.contains("k1") && message.contains("disabled"),
        "{message}"
    );
    assert!(
        refused.json().get("payloads").is_none(),
        "all or nothing: no partial answer"
    );

    ops::transition(&path, "k1", Transition::Enable).unwrap();
    state.namespaces["payments"].keyring.reload().unwrap();
    assert_eq!(
        post(&app, "/decode", "payments", None, &both).await.status,
        StatusCode::OK
    );

    ops::transition(&path, "k1", Transition::Disable).unwrap();
    ops::transition(&path, "k1", Transition::Destroy).unwrap();
    state.namespaces["payments"].keyring.reload().unwrap();
    let gone = post(&app, "/decode", "payments", None, &both).await;
    assert_eq!(gone.status, StatusCode::BAD_REQUEST);
    let message = gone.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("k1") && message.contains("destroyed"),
        "{message}"
    );

    let metrics = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        metrics
            .body
            .contains("tcodec_codec_failures_total{reason=\"key_refused\"} 2"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn limits_answer_413() {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "[limits]\nmax_body_bytes = 2048\nmax_payloads = 3\n{}",
        keys.toml(&[("payments", "")])
    );
    let (app, _) = router(&toml);
    let big = plain_batch(&[&"x".repeat(4096)]);
    let answer = post(&app, "/encode", "payments", None, &big).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "body_too_large");

    let many = plain_batch(&["1", "2", "3", "4"]);
    let answer = post(&app, "/encode", "payments", None, &many).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.error_code(), "too_many_payloads");

    let ok = post(
        &app,
        "/encode",
        "payments",
        None,
        &plain_batch(&["1", "2", "3"]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn limits_apply_to_decoded_sizes_too() {
    // A small sealed payload that decompresses past the body limit is refused,
    // so a compression bomb cannot make the server allocate without bound.
    let keys = Keyrings::new(&["payments"]);
    let (app, _) = router(&keys.toml(&[("payments", "")]));
    let zeros = "0".repeat(4 << 20);
    let sealed = post(&app, "/encode", "payments", None, &plain_batch(&[&zeros])).await;
    assert_eq!(sealed.status, StatusCode::OK);
    assert!(
        sealed.body.len() < 64 << 10,
        "zeros compress: {} bytes",
        sealed.body.len()
    );
    let toml = format!(
        "[limits]\nmax_body_bytes = 1048576\n{}",
        keys.toml(&[("payments", "")])
    );
    let (small, _) = router(&toml);
    let answer = post(&small, "/decode", "payments", None, &sealed.body).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.error_code(), "payload_too_large");
}

fn preflight(origin: &str) -> Request<Body> {
    Request::options("/codec/decode")
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-namespace,authorization,authorization-extras",
        )
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_allows_listed_origins_only() {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "[cors]\norigins = [\"http://localhost:8233\", \"https://cloud.temporal.io\"]\nallow_credentials = true\n{}",
        keys.toml(&[("payments", "")])
    );
    let (app, _) = router(&toml);

    let ok = send(&app, preflight("http://localhost:8233")).await;
    assert!(ok.status.is_success(), "{}", ok.status);
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:8233")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), Some("true"));
    let methods = ok
        .header("access-control-allow-methods")
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        methods.contains("post") && methods.contains("options"),
        "{methods}"
    );
    let headers = ok
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "content-type",
        "x-namespace",
        "authorization",
        "authorization-extras",
    ] {
        assert!(headers.contains(h), "{h} missing from {headers}");
    }

    let refused = send(&app, preflight("https://evil.example")).await;
    assert_eq!(refused.header("access-control-allow-origin"), None);
    let metrics = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert!(
        metrics
            .body
            .contains("tcodec_cors_preflights_total{allowed=\"true\"} 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("tcodec_cors_preflights_total{allowed=\"false\"} 1"),
        "{}",
        metrics.body
    );

    // The real request from the listed origin carries the CORS answer...
    let request = codec_request("/codec/decode", "payments")
        .header("origin", "https://cloud.temporal.io")
        .body(Body::from(plain_batch(&["1"])))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://cloud.temporal.io")
    );
    assert_eq!(
        answer.header("access-control-allow-credentials"),
        Some("true")
    );

    // ...and one from another origin is refused by the server too, not only by the browser.
    let request = codec_request("/codec/decode", "payments")
        .header("origin", "https://evil.example")
        .body(Body::from(plain_batch(&["1"])))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.error_code(), "origin_not_allowed");
    assert_eq!(answer.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn cors_without_credentials_sends_no_credentials_header() {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "[cors]\norigins = [\"http://localhost:8233\"]\n{}",
        keys.toml(&[("payments", "")])
    );
    let (app, _) = router(&toml);
    let ok = send(&app, preflight("http://localhost:8233")).await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("http://localhost:8233")
    );
    assert_eq!(ok.header("access-control-allow-credentials"), None);
}

/// `tcodec_codec_work_total` for `thread`, from `/metrics`.
async fn work_on(app: &axum::Router, thread: &str) -> u64 {
    let metrics = send(app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    let prefix = format!("tcodec_codec_work_total{{thread=\"{thread}\"}} ");
    metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in {}", metrics.body))
}

/// Small requests whose keys are in memory are answered on the async
/// workers; a first use of a key version, a compressed payload and a large
/// body go to a blocking thread. Every one of them is answered the same.
#[tokio::test]
async fn small_requests_with_keys_in_memory_skip_the_blocking_pool() {
    let keys = Keyrings::new(&["payments"]);
    let (app, state) = router(&keys.toml(&[("payments", "")]));
    let counts = || async {
        (
            work_on(&app, "async").await,
            work_on(&app, "blocking").await,
        )
    };

    // k1 has not been unwrapped yet: the first request fetches it.
    let sealed = post(&app, "/encode", "payments", None, &plain_batch(&[CARD])).await;
    assert_eq!(sealed.status, StatusCode::OK, "{}", sealed.body);
    assert_eq!(counts().await, (0, 1));
    let plain = post(&app, "/decode", "payments", None, &sealed.body).await;
    assert_eq!(texts(&plain.body), [CARD]);
    assert_eq!(counts().await, (1, 1));

    // Compressed (over the 512-byte threshold): decompression is left to a
    // blocking thread.
    let long = format!("\"{}\"", "card ".repeat(400));
    let compressed = post(&app, "/encode", "payments", None, &plain_batch(&[&long])).await;
    assert_eq!(counts().await, (2, 1));
    assert!(compressed.body.len() < long.len(), "not compressed");
    let plain = post(&app, "/decode", "payments", None, &compressed.body).await;
    assert_eq!(texts(&plain.body), [long.as_str()]);
    assert_eq!(counts().await, (2, 2));

    // A body over 64 KiB goes to a blocking thread whatever it holds.
    let many: Vec<&str> = vec![CARD; 1500];
    let big = post(&app, "/encode", "payments", None, &plain_batch(&many)).await;
    assert!(big.body.len() > tcodec_server::handlers::INLINE_MAX_BODY);
    assert_eq!(counts().await, (2, 3));
    let plain = post(&app, "/decode", "payments", None, &big.body).await;
    assert_eq!(texts(&plain.body), many);
    assert_eq!(counts().await, (2, 4));

    // A new primary is fetched on a blocking thread, then used inline.
    ops::rotate(&keys.keyring("payments"), &keys.keks(), None).unwrap();
    assert!(state.namespaces["payments"].keyring.reload().unwrap());
    let sealed = post(&app, "/encode", "payments", None, &plain_batch(&[CARD])).await;
    assert_eq!(key_ids(&sealed.body), ["k2"]);
    assert_eq!(counts().await, (2, 5));
    let plain = post(&app, "/decode", "payments", None, &sealed.body).await;
    assert_eq!(texts(&plain.body), [CARD]);
    assert_eq!(counts().await, (3, 5));
}

/// `/readyz` once its background check has run (the first probe starts it).
async fn readyz_checked(app: &axum::Router) -> Answer {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ready = send(app, Request::get("/readyz").body(Body::empty()).unwrap()).await;
        if ready.json()["checked"] == json!(true) {
            return ready;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness was never checked: {}",
            ready.body
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let keys = Keyrings::new(&["payments"]);
    let (app, _) = router(&keys.toml(&[("payments", "")]));
    let health = send(&app, Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = readyz_checked(&app).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(
        ready.json(),
        json!({"ready": true, "checked": true, "problems": 0, "warnings": 0})
    );

    let sealed = post(&app, "/encode", "payments", None, &plain_batch(&["1", "2"])).await;
    post(&app, "/decode", "payments", None, &sealed.body).await;
    post(&app, "/decode", "payments", None, "{broken").await;
    let metrics = send(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.body;
    for line in [
        "tcodec_requests_total{endpoint=\"encode\",code=\"200\"} 1",
        "tcodec_requests_total{endpoint=\"decode\",code=\"200\"} 1",
        "tcodec_requests_total{endpoint=\"decode\",code=\"400\"} 1",
        "tcodec_payloads_total{endpoint=\"encode\"} 2",
        "tcodec_payloads_total{endpoint=\"decode\"} 2",
        "tcodec_request_duration_seconds_count{endpoint=\"decode\"} 2",
        "tcodec_requests_in_flight 0",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[tokio::test]
async fn readiness_fails_while_a_keyring_has_no_usable_primary() {
    let keys = Keyrings::new(&["payments"]);
    let toml = keys.toml(&[("payments", "")]);
    let (app, state) = router(&toml);
    // A keyring under a master key this server does not hold: it loads, but
    // its primary cannot be unwrapped.
    let other = tcodec_keys::kek::local::LocalKek::parse(&"11".repeat(32)).unwrap();
    let kek = tcodec_keys::kek::KekProvider::kek_ref(&other, None).unwrap();
    let keks = tcodec_keys::kek::Keks::new().with(std::sync::Arc::new(other));
    let path = keys.keyring("payments");
    std::fs::remove_file(&path).unwrap();
    ops::init(&path, "payments", &keks, &kek).unwrap();
    state.namespaces["payments"].keyring.reload().unwrap();
    let ready = readyz_checked(&app).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    // Anyone may probe: a status and counts, no namespace, key or error text.
    assert_eq!(
        ready.json(),
        json!({"ready": false, "checked": true, "problems": 1, "warnings": 0})
    );
    let report = state.check_readiness().await;
    assert!(
        report.problems[0].contains("namespace payments")
            && report.problems[0].contains("master key"),
        "{report:?}"
    );
}

/// The status of a one-payload codec request.
async fn status(app: &axum::Router, path: &str, namespace: &str, auth: Option<&str>) -> StatusCode {
    post(app, path, namespace, auth, &plain_batch(&["1"]))
        .await
        .status
}

// ---- JWT ----

fn jwt_toml(issuer: &Issuer, keys: &Keyrings, namespaces: &[(&str, &str)]) -> String {
    format!("{}{}", issuer.auth_toml(), keys.toml(namespaces))
}

/// A reference in Temporal's shape to an object in `bucket`.
fn reference(bucket: &str) -> String {
    let claim = json!({"driverName": "aws.s3driver", "claimData": {
        "bucket": bucket, "key": format!("v0/ns/payments/d/sha256/{}", "a".repeat(64)),
        "hash_algorithm": "sha256", "hash_value": "a".repeat(64)}});
    json!({"payloads": [{"metadata": {"encoding": b64("json/protobuf"),
        "messageType": b64("temporal.api.sdk.v1.ExternalStorageReference")},
        "data": b64(&claim.to_string()), "externalPayloads": [{"sizeBytes": "3000000"}]}]})
    .to_string()
}

#[tokio::test]
async fn download_takes_the_same_credentials_as_decode_and_references_only() {
    let issuer = Issuer::start().await;
    let keys = Keyrings::new(&["payments", "hr"]);
    // Nothing listens at the endpoint: every answer here comes before any request to it.
    let storage = "[namespaces.payments.storage]\nbucket = \"payments-payloads\"\n\
                   endpoint = \"http://127.0.0.1:9\"\nregion = \"us-east-1\"";
    let (app, state) = router(&jwt_toml(
        &issuer,
        &keys,
        &[("payments", storage), ("hr", "")],
    ));
    state.auth.prepare().await.unwrap();
    let reader = issuer.bearer(json!({"permissions": ["payments:read"]}));
    let hr = issuer.bearer(json!({"permissions": ["hr:read"]}));
    let elsewhere = reference("someone-elses-bucket");

    let answer = post(&app, "/download", "payments", None, &elsewhere).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = post(&app, "/download", "payments", Some(&hr), &elsewhere).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let answer = post(&app, "/download", "payments", Some(&reader), &elsewhere).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.error_code(), "reference_refused");
    let answer = post(
        &app,
        "/download",
        "payments",
        Some(&reader),
        &plain_batch(&[CARD]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert_eq!(answer.error_code(), "not_a_reference");
    // A namespace without storage: a reference is kept when asked to, refused otherwise.
    let ours = reference("payments-payloads");
    let answer = post(
        &app,
        "/decode?preserveStorageRefs=true",
        "hr",
        Some(&hr),
        &ours,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.json(),
        serde_json::from_str::<serde_json::Value>(&ours).unwrap()
    );
    let answer = post(&app, "/decode", "hr", Some(&hr), &ours).await;
    assert_eq!(answer.error_code(), "storage_not_configured");
    assert!(answer.body.contains("payload 0: "), "{}", answer.body);
    // More references than one request may fetch: refused before any is.
    let one: serde_json::Value = serde_json::from_str(&reference("payments-payloads")).unwrap();
    let many = json!({"payloads": vec![one["payloads"][0].clone(); 101]}).to_string();
    let answer = post(&app, "/download", "payments", Some(&reader), &many).await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.body
    );
    assert_eq!(answer.error_code(), "too_many_references");
    let metrics = state.metrics.render();
    assert!(
        metrics.contains("tcodec_requests_total{endpoint=\"download\",code=\"401\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn jwt_permissions_claim_grants_read_and_write_per_namespace() {
    let issuer = Issuer::start().await;
    let keys = Keyrings::new(&["payments", "hr"]);
    let (app, state) = router(&jwt_toml(&issuer, &keys, &[("payments", ""), ("hr", "")]));
    state.auth.prepare().await.unwrap();
    let reader = issuer.bearer(json!({"permissions": ["payments:read"]}));
    let writer = issuer.bearer(json!({"permissions": ["payments:write", "hr:read"]}));
    let admin = issuer.bearer(json!({"permissions": ["hr:admin"]}));

    let sealed = post(
        &app,
        "/encode",
        "payments",
        Some(&writer),
        &plain_batch(&[CARD]),
    )
    .await;
    assert_eq!(sealed.status, StatusCode::OK, "{}", sealed.body);
    let decoded = post(&app, "/decode", "payments", Some(&reader), &sealed.body).await;
    assert_eq!(decoded.status, StatusCode::OK, "{}", decoded.body);
    assert_eq!(texts(&decoded.body), [CARD]);

    // read is not write
    let answer = post(
        &app,
        "/encode",
        "payments",
        Some(&reader),
        &plain_batch(&["1"]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.error_code(), "forbidden");
    // payments:read says nothing of hr
    let answer = post(&app, "/decode", "hr", Some(&reader), &plain_batch(&["1"])).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    // admin covers read and write
    assert_eq!(
        status(&app, "/encode", "hr", Some(&admin)).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&app, "/decode", "hr", Some(&admin)).await,
        StatusCode::OK
    );
    // a namespace that merely ends like another is not it
    let tricky = issuer.bearer(json!({"permissions": ["xpayments:admin", "payments-x:admin"]}));
    assert_eq!(
        status(&app, "/decode", "payments", Some(&tricky)).await,
        StatusCode::FORBIDDEN
    );
    // ES256 tokens verify too, and Authorization-Extras (the UI's id token) is ignored
    let es = issuer.sign(
        Algorithm::ES256,
        "ec-1",
        &Issuer::claims(json!({"permissions": ["payments:read"]})),
    );
    let request = codec_request("/decode", "payments")
        .header("authorization", &es)
        .header("authorization-extras", "some.id.token")
        .body(Body::from(sealed.body.clone()))
        .unwrap();
    let answer = send(&app, request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(texts(&answer.body), [CARD]);
}

#[tokio::test]
async fn jwt_bad_credentials_get_401_without_detail() {
    let issuer = Issuer::start().await;
    let keys = Keyrings::new(&["payments"]);
    let (app, state) = router(&jwt_toml(&issuer, &keys, &[("payments", "")]));
    state.auth.prepare().await.unwrap();
    let perms = json!({"permissions": ["payments:admin"]});
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let with = |extra: serde_json::Value| {
        let mut claims = Issuer::claims(perms.clone());
        for (k, v) in extra.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    let mut no_exp = Issuer::claims(perms.clone());
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_iss = Issuer::claims(perms.clone());
    no_iss.as_object_mut().unwrap().remove("iss");
    let valid = issuer.bearer(perms.clone());
    let token = valid.strip_prefix("Bearer ").unwrap();
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&with(
            json!({"permissions": ["payments:admin", "hr:admin"]}),
        ))
        .unwrap(),
    );
    parts[1] = &forged_claims;
    let forged = format!("Bearer {}", parts.join("."));
    // An HS256 token "signed" with the RSA public key: the classic confusion attack.
    let jwks: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(issuer.dir.path().join("jwks.json")).unwrap(),
    )
    .unwrap();
    let mut hs_header = jsonwebtoken::Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-1".into());
    let hs = format!(
        "Bearer {}",
        jsonwebtoken::encode(
            &hs_header,
            &Issuer::claims(perms.clone()),
            &jsonwebtoken::EncodingKey::from_secret(
                jwks["keys"][0]["n"].as_str().unwrap().as_bytes()
            )
        )
        .unwrap()
    );

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no Authorization", None),
        ("not a bearer", Some("Basic dXNlcjpwYXNz".into())),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "expired",
            Some(issuer.sign(Algorithm::RS256, "rsa-1", &with(json!({"exp": now - 3600})))),
        ),
        (
            "not yet valid",
            Some(issuer.sign(Algorithm::RS256, "rsa-1", &with(json!({"nbf": now + 3600})))),
        ),
        (
            "no exp",
            Some(issuer.sign(Algorithm::RS256, "rsa-1", &no_exp)),
        ),
        (
            "no iss",
            Some(issuer.sign(Algorithm::RS256, "rsa-1", &no_iss)),
        ),
        (
            "wrong audience",
            Some(issuer.sign(
                Algorithm::RS256,
                "rsa-1",
                &with(json!({"aud": "someone-else"})),
            )),
        ),
        (
            "wrong issuer",
            Some(issuer.sign(
                Algorithm::RS256,
                "rsa-1",
                &with(json!({"iss": "https://evil.example/"})),
            )),
        ),
        (
            "unknown kid",
            Some(issuer.sign(Algorithm::RS256, "rsa-9", &Issuer::claims(perms.clone()))),
        ),
        (
            "kid of the other key",
            Some(issuer.sign(Algorithm::RS256, "ec-1", &Issuer::claims(perms.clone()))),
        ),
        ("forged claims", Some(forged)),
        ("HS256 with the public key", Some(hs)),
    ];
    for (what, auth) in cases {
        let answer = post(
            &app,
            "/decode",
            "payments",
            auth.as_deref(),
            &plain_batch(&["1"]),
        )
        .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            answer.body
        );
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{what}");
        assert_eq!(answer.error_code(), "unauthenticated", "{what}");
    }
    // The valid one, for contrast.
    assert_eq!(
        status(&app, "/decode", "payments", Some(&valid)).await,
        StatusCode::OK
    );
    // Unauthenticated callers learn nothing about namespaces: 401 before 404.
    let answer = post(
        &app,
        "/decode",
        "no-such-namespace",
        None,
        &plain_batch(&["1"]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn jwt_email_allow_lists_per_namespace() {
    // Temporal Cloud tokens name the user by email and carry no namespace permissions.
    let issuer = Issuer::start().await;
    let keys = Keyrings::new(&["payments", "open"]);
    let (app, state) = router(&jwt_toml(
        &issuer,
        &keys,
        &[
            (
                "payments",
                "allowed_emails = [\"Ada@Example.com\"]\nencode_emails = [\"bot@example.com\"]",
            ),
            ("open", ""),
        ],
    ));
    state.auth.prepare().await.unwrap();
    let ada = issuer.bearer(json!({"email": "ada@example.com"}));
    let bot = issuer.bearer(json!({"email": "bot@example.com"}));
    let eve = issuer.bearer(json!({"email": "eve@example.com", "permissions": ["payments:admin"]}));
    assert_eq!(
        status(&app, "/decode", "payments", Some(&ada)).await,
        StatusCode::OK
    );
    // Reading never grants encoding; the encode list grants both.
    assert_eq!(
        status(&app, "/encode", "payments", Some(&ada)).await,
        StatusCode::FORBIDDEN
    );
    for path in ["/encode", "/decode"] {
        assert_eq!(
            status(&app, path, "payments", Some(&bot)).await,
            StatusCode::OK,
            "{path}"
        );
    }
    // With an allow-list, token permissions are not consulted.
    assert_eq!(
        status(&app, "/decode", "payments", Some(&eve)).await,
        StatusCode::FORBIDDEN
    );
    // Without one, an email alone grants nothing.
    assert_eq!(
        status(&app, "/decode", "open", Some(&ada)).await,
        StatusCode::FORBIDDEN
    );
    // An email the issuer says it has not verified names nobody.
    let unverified = issuer.bearer(json!({"email": "ada@example.com", "email_verified": false}));
    assert_eq!(
        status(&app, "/decode", "payments", Some(&unverified)).await,
        StatusCode::FORBIDDEN
    );
    let verified = issuer.bearer(json!({"email": "ada@example.com", "email_verified": true}));
    assert_eq!(
        status(&app, "/decode", "payments", Some(&verified)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn jwt_readiness_waits_for_the_jwks() {
    let keys = Keyrings::new(&["payments"]);
    // Nothing listens on this port.
    let port = support::free_port();
    let toml = format!(
        "[auth]\nmode = \"jwt\"\n[auth.jwt]\njwks_url = \"http://127.0.0.1:{port}/jwks.json\"\nissuer = \"https://sso.example.test/\"\naudiences = [{AUDIENCE:?}]\n{}",
        keys.toml(&[("payments", "")])
    );
    let (app, state) = router(&toml);
    assert!(state.auth.prepare().await.is_err());
    let ready = readyz_checked(&app).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.json()["problems"], json!(1));
    assert!(!ready.body.contains("JWKS"), "{}", ready.body);
    let report = state.check_readiness().await;
    assert_eq!(report.problems, ["the JWKS has not been fetched"]);
}

// ---- trusted proxy and client certificates ----

fn from_peer(mut request: Request<Body>, addr: &str, names: &[&str]) -> Request<Body> {
    request.extensions_mut().insert(PeerInfo {
        addr: addr.parse::<SocketAddr>().unwrap(),
        client_names: names.iter().map(|n| (*n).to_owned()).collect(),
    });
    request
}

#[tokio::test]
async fn proxy_mode_trusts_only_configured_proxy_addresses() {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "[auth]\nmode = \"proxy\"\n[auth.proxy]\nuser_header = \"X-Forwarded-Email\"\ntrusted_proxies = [\"127.0.0.2/32\", \"10.1.0.0/16\"]\n{}",
        keys.toml(&[("payments", "allowed_emails = [\"ada@example.com\"]")])
    );
    let (app, _) = router(&toml);
    let request = |user: Option<&str>| {
        let mut r = codec_request("/decode", "payments");
        if let Some(user) = user {
            r = r.header("x-forwarded-email", user);
        }
        r.body(Body::from(plain_batch(&["1"]))).unwrap()
    };
    let ok = send(
        &app,
        from_peer(request(Some("ada@example.com")), "10.1.2.3:5000", &[]),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // The header from anywhere but the proxy is not believed.
    let direct = send(
        &app,
        from_peer(request(Some("ada@example.com")), "127.0.0.1:5000", &[]),
    )
    .await;
    assert_eq!(direct.status, StatusCode::UNAUTHORIZED);
    // The proxy named nobody.
    let nobody = send(&app, from_peer(request(None), "127.0.0.2:5000", &[])).await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    // Someone not on the namespace's list.
    let eve = send(
        &app,
        from_peer(request(Some("eve@example.com")), "127.0.0.2:5000", &[]),
    )
    .await;
    assert_eq!(eve.status, StatusCode::FORBIDDEN);
    // Reading never grants encoding: ada is not on the encode list.
    let encode = codec_request("/encode", "payments")
        .header("x-forwarded-email", "ada@example.com")
        .body(Body::from(plain_batch(&["1"])))
        .unwrap();
    let encode = send(&app, from_peer(encode, "10.1.2.3:5000", &[])).await;
    assert_eq!(encode.status, StatusCode::FORBIDDEN, "{}", encode.body);
    // Two values of the user header (one the proxy set, one the client slipped
    // past it) name nobody.
    let two = codec_request("/decode", "payments")
        .header("x-forwarded-email", "eve@example.com")
        .header("x-forwarded-email", "ada@example.com")
        .body(Body::from(plain_batch(&["1"])))
        .unwrap();
    let two = send(&app, from_peer(two, "10.1.2.3:5000", &[])).await;
    assert_eq!(two.status, StatusCode::UNAUTHORIZED, "{}", two.body);
}

#[tokio::test]
async fn proxy_mode_without_lists_lets_the_proxy_decide_who_reads_and_nobody_encodes() {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "[auth]\nmode = \"proxy\"\n[auth.proxy]\nuser_header = \"X-Forwarded-Email\"\ntrusted_proxies = [\"127.0.0.2/32\"]\n{}",
        keys.toml(&[("payments", "")])
    );
    let (app, _) = router(&toml);
    let call = |path: &str| {
        let request = codec_request(path, "payments")
            .header("x-forwarded-email", "anyone@example.com")
            .body(Body::from(plain_batch(&["1"])))
            .unwrap();
        from_peer(request, "127.0.0.2:5000", &[])
    };
    assert_eq!(send(&app, call("/decode")).await.status, StatusCode::OK);
    assert_eq!(
        send(&app, call("/encode")).await.status,
        StatusCode::FORBIDDEN
    );
}

fn mtls_toml(keys: &Keyrings, dir: &std::path::Path, namespace: &str) -> String {
    let path = |f: &str| dir.join(f).display().to_string();
    format!(
        "listen = \"127.0.0.1:0\"\n[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n[auth]\nmode = \"mtls\"\n{}",
        path("server.pem"),
        path("server.key"),
        path("ca.pem"),
        keys.toml(&[("payments", namespace)])
    )
}

#[tokio::test]
async fn mtls_mode_authorizes_by_certificate_name() {
    let keys = Keyrings::new(&["payments"]);
    let dir = tempfile::tempdir().unwrap();
    support::server::generate("tls", dir.path());
    let (app, _) = router(&mtls_toml(
        &keys,
        dir.path(),
        "allowed_clients = [\"worker-1\"]\nencode_clients = [\"starter\"]",
    ));
    let request = |path: &str, names: &[&str]| {
        let request = codec_request(path, "payments")
            .body(Body::from(plain_batch(&["1"])))
            .unwrap();
        from_peer(request, "127.0.0.1:5000", names)
    };
    let ok = send(&app, request("/decode", &["worker-1"])).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    // Reading never grants encoding; the encode list grants both.
    let encode = send(&app, request("/encode", &["worker-1"])).await;
    assert_eq!(encode.status, StatusCode::FORBIDDEN);
    for path in ["/encode", "/decode"] {
        let starter = send(&app, request(path, &["starter"])).await;
        assert_eq!(starter.status, StatusCode::OK, "{path}: {}", starter.body);
    }
    let other = send(&app, request("/decode", &["worker-2"])).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    let none = send(&app, request("/decode", &[])).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn mtls_mode_needs_named_clients_or_an_explicit_any_client() {
    let keys = Keyrings::new(&["payments"]);
    let dir = tempfile::tempdir().unwrap();
    support::server::generate("tls", dir.path());
    let unnamed = tcodec_server::config::Config::parse(&mtls_toml(&keys, dir.path(), ""))
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        unnamed.contains("namespaces.payments.allowed_clients")
            && unnamed.contains("allow_any_client"),
        "{unnamed}"
    );
    let (app, _) = router(&mtls_toml(&keys, dir.path(), "allow_any_client = true"));
    let request = |path: &str| {
        let request = codec_request(path, "payments")
            .body(Body::from(plain_batch(&["1"])))
            .unwrap();
        from_peer(request, "127.0.0.1:5000", &["anyone"])
    };
    assert_eq!(send(&app, request("/decode")).await.status, StatusCode::OK);
    assert_eq!(
        send(&app, request("/encode")).await.status,
        StatusCode::FORBIDDEN
    );
}

// ---- timeout and concurrency (virtual time: nothing here waits on the clock) ----

/// A request whose body starts and never finishes.
fn stalled_request() -> Request<Body> {
    use futures_util::StreamExt;
    let start = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(axum::body::Bytes::from_static(b"{\"payloads\":"))
    });
    let body = Body::from_stream(start.chain(futures_util::stream::pending()));
    codec_request("/decode", "payments").body(body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_stalled_request_times_out_with_503() {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "[limits]\nrequest_timeout_ms = 2000\n{}",
        keys.toml(&[("payments", "")])
    );
    let (app, _) = router(&toml);
    let started = tokio::time::Instant::now();
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        send(&app, stalled_request()),
    )
    .await
    .expect("the server should have given up on the request");
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert_eq!(answer.error_code(), "timeout");
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
}

/// With `max_concurrent_requests` slots and one request stalled (until its
/// 10 s timeout), how long a second, complete request takes (virtual time).
async fn second_request_wait(max_concurrent: usize) -> std::time::Duration {
    let keys = Keyrings::new(&["payments"]);
    let toml = format!(
        "[limits]\nrequest_timeout_ms = 10000\nmax_concurrent_requests = {max_concurrent}\n{}",
        keys.toml(&[("payments", "")])
    );
    let (app, _) = router(&toml);
    let stalled = tokio::spawn({
        let app = app.clone();
        async move { send(&app, stalled_request()).await }
    });
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    let request = codec_request("/decode", "payments")
        .body(Body::from(plain_batch(&["1"])))
        .unwrap();
    assert_eq!(send(&app, request).await.status, StatusCode::OK);
    let waited = started.elapsed();
    stalled.abort();
    waited
}

#[tokio::test(start_paused = true)]
async fn requests_over_the_concurrency_limit_wait_their_turn() {
    // The stalled request holds the only slot: the second is admitted only
    // once the first times out.
    let waited = second_request_wait(1).await;
    assert!(waited >= std::time::Duration::from_secs(9), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn requests_under_the_concurrency_limit_do_not_wait() {
    let waited = second_request_wait(2).await;
    assert!(waited < std::time::Duration::from_secs(1), "{waited:?}");
}
