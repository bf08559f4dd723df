//! Who sees which objects, as RabbitMQ's management plugin decides it
//! (`rabbit_mgmt_util:list_visible_vhosts/1`, `filter_user/2`,
//! `rabbit_web_dispatch_access_control:is_authorized_vhost/3` and
//! `is_authorized_user/4` in 3.13):
//!
//! - a monitor (tag `administrator` or `monitoring`) sees every vhost and
//!   every user's connections, channels and consumers;
//! - any other management user sees the vhosts they have a permission in,
//!   and only their own connections, channels and consumers;
//! - an object of another user's may be read by a monitor, closed
//!   (DELETE) only by an administrator.

use super::auth::{is_admin, is_monitor};
use super::ApiError;
use crate::admin::{Admin, UserView};
use std::collections::HashSet;

/// The vhosts `user` may see: `None` for all of them (a monitor).
pub(crate) fn visible_vhosts(admin: &Admin, user: &UserView) -> Option<HashSet<String>> {
    if is_monitor(user) {
        return None;
    }
    Some(login_vhosts(admin, user))
}

/// The vhosts `user` has a permission in (`list_login_vhosts_names`).
fn login_vhosts(admin: &Admin, user: &UserView) -> HashSet<String> {
    admin
        .list_permissions()
        .into_iter()
        .filter(|p| p.user == user.name)
        .map(|p| p.vhost)
        .collect()
}

/// `is_authorized_vhost`: an administrator, or a user with a permission in
/// `vhost`. A vhost that does not exist passes (the handler answers 404).
pub(crate) fn check_vhost(admin: &Admin, user: &UserView, vhost: &str) -> Result<(), ApiError> {
    if admin.may_use_vhost(user, vhost) {
        Ok(())
    } else {
        Err(ApiError::not_authorised(
            "User not authorised to access virtual host",
        ))
    }
}

/// `is_authorized_user` for an object owned by `owner` (None: no such
/// object): reading needs a monitor, deleting an administrator, unless the
/// object is the caller's own.
pub(crate) fn check_owner(
    user: &UserView,
    owner: Option<&str>,
    delete: bool,
) -> Result<(), ApiError> {
    let allowed = if delete {
        is_admin(user)
    } else {
        is_monitor(user)
    };
    if allowed || owner == Some(user.name.as_str()) {
        Ok(())
    } else {
        Err(ApiError::not_authorised(
            "User not authorised to access object",
        ))
    }
}

/// `filter_user`: a monitor sees every object, anyone else their own.
pub(crate) fn sees_user(user: &UserView, owner: &str) -> bool {
    is_monitor(user) || owner == user.name
}
