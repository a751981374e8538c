//! A socket peer's user name and group names, from its uid, through the
//! system's user database (NSS: `/etc/passwd`, LDAP, sssd…).
//!
//! Guarantees: lookups never panic; a uid without a passwd entry yields no
//! name and no groups (so a policy that names users or groups cannot match
//! it); at most [`MAX_GROUPS`] groups are read.

use super::policy::Caller;
use std::ffi::{CStr, CString};

/// The most groups read for one user.
pub const MAX_GROUPS: usize = 1024;

/// Who `uid` is. Blocking (NSS may ask a network service): call it from a
/// blocking thread.
pub fn caller(uid: u32) -> Caller {
    let Some((user, gid)) = user_of(uid) else { return Caller { uid, user: None, groups: Vec::new() } };
    let mut groups: Vec<String> = group_ids(&user, gid).into_iter().filter_map(group_name).collect();
    groups.sort();
    groups.dedup();
    Caller { uid, user: Some(user), groups }
}

#[allow(unsafe_code)]
fn user_of(uid: u32) -> Option<(String, u32)> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: getpwuid_r writes only into `pwd` and `buf` (whose length it is
    // given) and sets `result` to null or to `&pwd`; the strings it points
    // to live in `buf`, which outlives their use here.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        let name = CStr::from_ptr(pwd.pw_name).to_str().ok()?.to_string();
        Some((name, pwd.pw_gid))
    }
}

#[allow(unsafe_code)]
fn group_ids(user: &str, gid: u32) -> Vec<u32> {
    let Ok(name) = CString::new(user) else { return vec![gid] };
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `groups` has room for `count` entries; getgrouplist writes
        // at most that many and stores the number it needs in `count`.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        let count = usize::try_from(count).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(count);
            return groups;
        }
        if count <= groups.len() || count > MAX_GROUPS {
            return vec![gid];
        }
        groups.resize(count, 0);
    }
}

#[allow(unsafe_code)]
fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: as in `user_of`, for getgrgid_r.
    unsafe {
        let mut grp: libc::group = std::mem::zeroed();
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        if rc != 0 || result.is_null() || grp.gr_name.is_null() {
            return None;
        }
        Some(CStr::from_ptr(grp.gr_name).to_str().ok()?.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_root_with_its_group() {
        let root = caller(0);
        assert_eq!(root.user.as_deref(), Some("root"));
        assert!(root.groups.iter().any(|g| g == "root"), "{:?}", root.groups);
    }

    #[test]
    fn a_uid_nobody_has_gets_no_name_and_no_groups() {
        let ghost = caller(3_999_999_999);
        assert_eq!((ghost.user, ghost.groups.len()), (None, 0));
    }
}
