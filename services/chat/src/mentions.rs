//! Who a message mentions. The one rule: `@` followed by a user id, where the id is a
//! member of the room other than the sender. The id runs to the first character that
//! cannot be in one (anything but letters, digits and `. _ : -`), and trailing `.` and `:`
//! are dropped, so "thanks @u-2." mentions `u-2`. Each member counts once, in the order of
//! first appearance; ids that are not members are plain text. Parsing the text, rather than
//! trusting a list the client sends, means a mention is always visible in the message.

/// At most this many members are notified for one message.
pub const MAX_MENTIONS: usize = 20;

/// The candidate ids `@`-mentioned in `text`, each once, in order.
pub fn candidates(text: &str) -> Vec<&str> {
    let mut found: Vec<&str> = Vec::new();
    for (at, _) in text.match_indices('@') {
        let rest = &text[at + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._:-".contains(c)))
            .unwrap_or(rest.len());
        let id = rest[..end].trim_end_matches(['.', ':']);
        if !id.is_empty() && !found.contains(&id) {
            found.push(id);
        }
    }
    found
}

/// The members `text` mentions: candidates that are in `members`, without `sender`.
pub fn resolve(text: &str, sender: &str, members: &[String]) -> Vec<String> {
    candidates(text)
        .into_iter()
        .filter(|id| *id != sender && members.iter().any(|m| m == id))
        .take(MAX_MENTIONS)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_end_at_characters_ids_do_not_have() {
        assert_eq!(
            candidates("hi @u-2. and @bob:, @u-2 again (@c_3) mail@x"),
            ["u-2", "bob", "c_3", "x"]
        );
        assert!(candidates("no mentions @ here @").is_empty());
    }

    #[test]
    fn only_members_other_than_the_sender_count() {
        let members = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(resolve("@a @b @z @c @b", "a", &members), ["b", "c"]);
        assert!(resolve("@stranger", "a", &members).is_empty());
    }
}
