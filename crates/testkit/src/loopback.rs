//! Serving a test's own small HTTP app on a free port of 127.0.0.1.

use axum::Router;

/// Serves `app` on a free port of 127.0.0.1 for the rest of the test; its base URL.
pub(crate) async fn serve_on_loopback(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on 127.0.0.1");
    let address = format!(
        "http://{}",
        listener.local_addr().expect("a bound listener's address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}
