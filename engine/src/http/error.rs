//! Errors as the HTTP APIs answer them: a status code and a JSON body
//! `{"error": {"status": 404, "message": "…"}}`.

use serde::Serialize;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Extra headers (`Allow`, `Retry-After`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A failure inside Weir: the details go to the log, never to the client (they may name
    /// files, or say more about the store than a caller should learn).
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(%message, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "an internal error occurred; the server log has the details",
        )
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// The answer's HTTP status, repeated.
    pub status: u16,
    /// A sentence for a person: what was wrong and, where it helps, what to do.
    pub message: String,
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                message: self.message,
            },
        };
        let mut response =
            warp::reply::with_status(warp::reply::json(&body), self.status).into_response();
        for (name, value) in self.headers {
            if let Ok(value) = warp::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Turns warp's rejections (no route, wrong method on a route, bad query or header) into JSON
/// errors. Clients get a fixed sentence per kind, never a rejection's `Debug` text (which names
/// internal types and every filter tried); that goes to the `debug` log.
pub async fn recover(rejection: warp::Rejection) -> Result<Response, std::convert::Infallible> {
    use warp::reject::{InvalidHeader, InvalidQuery, MethodNotAllowed, MissingHeader};
    let error = if rejection.is_not_found() {
        ApiError::not_found("no such resource")
    } else if rejection.find::<MethodNotAllowed>().is_some() {
        // Every route takes GET but the POST ones, which answer their own 405 (`admin::routes`).
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            .with_header("allow", "GET")
    } else if rejection.find::<InvalidQuery>().is_some() {
        ApiError::bad_request("the query string is not valid")
    } else if let Some(e) = rejection.find::<InvalidHeader>() {
        ApiError::bad_request(format!("the {} header is not valid", e.name()))
    } else if let Some(e) = rejection.find::<MissingHeader>() {
        ApiError::bad_request(format!("the {} header is missing", e.name()))
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        ApiError::bad_request("the request could not be handled")
    };
    Ok(error.into_response())
}
