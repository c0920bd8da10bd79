//! The visitor's recent generations, kept in the browser's local storage (nothing about them is sent anywhere).

use serde::{Deserialize, Serialize};

const KEY: &str = "s2v.recent";
/// Generations kept; older ones drop off.
pub const KEPT: usize = 12;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recent {
    pub id: String,
    pub share: String,
    /// The first picture's address, for a thumbnail.
    pub picture: String,
    pub count: usize,
}

/// The list with `newest` first, without an older entry of the same id, at most [`KEPT`] long.
pub fn with(mut list: Vec<Recent>, newest: Recent) -> Vec<Recent> {
    list.retain(|r| r.id != newest.id);
    list.insert(0, newest);
    list.truncate(KEPT);
    list
}

pub fn load() -> Vec<Recent> {
    storage()
        .and_then(|s| s.get_item(KEY).ok().flatten())
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

pub fn save(list: &[Recent]) {
    if let (Some(storage), Ok(text)) = (storage(), serde_json::to_string(list)) {
        // Storage may be full or refused (private browsing): the list then lives for this visit only.
        let _ = storage.set_item(KEY, &text);
    }
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> Recent {
        Recent {
            id: id.into(),
            share: format!("/s/{id}"),
            picture: "/img/x.png".into(),
            count: 1,
        }
    }

    #[test]
    fn the_newest_comes_first_once_and_the_list_stays_short() {
        let mut list = Vec::new();
        for i in 0..20 {
            list = with(list, entry(&i.to_string()));
        }
        assert_eq!(list.len(), KEPT);
        assert_eq!(list[0].id, "19");
        let again = with(list, entry("15"));
        assert_eq!(again[0].id, "15");
        assert_eq!(again.iter().filter(|r| r.id == "15").count(), 1);
    }
}
