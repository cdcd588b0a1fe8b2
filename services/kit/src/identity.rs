//! Who is calling, as the gateway tells the services behind it. The gateway verifies the
//! caller's token, strips any copy of these headers a client sent, and sets them; services
//! trust them because only the gateway is exposed to clients.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::problem::Problem;

/// The signed-in user's id (the token's `sub`).
pub const USER_ID_HEADER: &str = "x-user-id";
/// The signed-in user's roles, comma-separated.
pub const USER_ROLES_HEADER: &str = "x-user-roles";

/// The role that may manage other users' data.
pub const ADMIN_ROLE: &str = "admin";

/// The caller as the gateway identified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub roles: Vec<String>,
}

impl Caller {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN_ROLE)
    }

    /// The caller may act on `user_id`'s data: it is theirs, or they are an admin.
    pub fn may_act_for(&self, user_id: &str) -> bool {
        self.user_id == user_id || self.is_admin()
    }

    fn from_parts(parts: &Parts) -> Option<Self> {
        let user_id = parts
            .headers
            .get(USER_ID_HEADER)?
            .to_str()
            .ok()
            .filter(|v| !v.is_empty())?
            .to_owned();
        let roles = parts
            .headers
            .get(USER_ROLES_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Some(Self { user_id, roles })
    }
}

/// A signed-in caller is required: 401 without one.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Self::from_parts(parts).ok_or_else(|| {
            Problem::unauthorized("sign in first: call through the gateway with a bearer token")
        })
    }
}

/// The caller when the request came through the gateway signed in; `None` for calls
/// between services, which are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaybeCaller(pub Option<Caller>);

impl MaybeCaller {
    /// Through the gateway only an admin may do `what`; calls between services carry no
    /// caller and are trusted.
    pub fn require_admin(&self, what: &str) -> Result<(), Problem> {
        match &self.0 {
            Some(caller) if !caller.is_admin() => {
                Err(Problem::forbidden(format!("only an admin may {what}")))
            }
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for MaybeCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Caller::from_parts(parts)))
    }
}

/// The client's network address: the last `X-Forwarded-For` entry when a proxy (the
/// gateway) added one, else the TCP peer. Unknown only when neither exists (tests driving a
/// router without a socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    fn from_parts(parts: &Parts) -> Self {
        let forwarded = parts
            .headers
            .get_all(FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
            .next_back();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        Self(forwarded.or(peer))
    }
}

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => write!(f, "{ip}"),
            None => f.write_str("unknown"),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_parts(parts))
    }
}

/// Header a proxy appends the address it received a request from to.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder();
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn callers_come_from_the_gateway_headers() {
        let caller = Caller::from_parts(&parts(&[
            ("x-user-id", "u-1"),
            ("x-user-roles", "user, admin"),
        ]))
        .unwrap();
        assert_eq!(caller.roles, ["user", "admin"]);
        assert!(caller.is_admin());
        assert!(caller.may_act_for("u-2"));
        let plain = Caller::from_parts(&parts(&[("x-user-id", "u-1")])).unwrap();
        assert!(plain.may_act_for("u-1") && !plain.may_act_for("u-2"));
        assert!(Caller::from_parts(&parts(&[])).is_none());
        assert!(Caller::from_parts(&parts(&[("x-user-id", "")])).is_none());
    }

    #[test]
    fn the_client_address_is_what_the_last_proxy_saw() {
        let mut through_proxy = parts(&[("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
        through_proxy
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000))));
        assert_eq!(
            ClientAddr::from_parts(&through_proxy).to_string(),
            "10.0.0.2"
        );
        let mut direct = parts(&[]);
        direct
            .extensions
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000))));
        assert_eq!(ClientAddr::from_parts(&direct).to_string(), "127.0.0.1");
        assert_eq!(ClientAddr::from_parts(&parts(&[])).0, None);
    }
}
