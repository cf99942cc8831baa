//! `ferry status`, `peers`, `routes`, `services` and `subscriptions`: read a running node's
//! admin API and print a table or the JSON itself; and the one exchange with a node's local
//! API that they and `ferry publish` share.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// Fetches `path` from the admin API at `admin` and parses the JSON answer.
pub fn fetch(admin: SocketAddr, path: &str) -> Result<Value, String> {
    let request = http::Request::get(path)
        .header(http::header::HOST, admin.to_string())
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let (status, body) = exchange(admin, "the admin API", request)?;
    if !status.is_success() {
        return Err(format!(
            "{path} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{path} answered with bad JSON: {e}"))
}

/// Sends one request to a node's local API at `address` (`what` names it in errors) and
/// returns the answer's status and body.
pub fn exchange(
    address: SocketAddr,
    what: &str,
    request: http::Request<Full<Bytes>>,
) -> Result<(http::StatusCode, Bytes), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let unreachable =
            |e: &dyn std::fmt::Display| format!("cannot reach {what} at {address}: {e}");
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        Ok((status, body))
    })
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.2}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Prints rows of JSON objects as an aligned table of `columns`.
pub fn print_table(rows: &Value, columns: &[&str]) {
    let rows: Vec<Vec<String>> = rows
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
                .collect()
        })
        .unwrap_or_default();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

/// Prints an object's fields, one `key: value` a line.
pub fn print_fields(object: &Value) {
    if let Some(map) = object.as_object() {
        let width = map.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in map {
            let v = match v {
                Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
                other => cell(other),
            };
            println!("{k:<width$}  {v}");
        }
    }
}
