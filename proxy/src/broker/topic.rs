//! Topics and the patterns subscriptions match them with, as NATS has them: tokens of
//! `[A-Za-z0-9_-]+` joined by `.`; in a pattern, `*` stands for one token and `>`, last only,
//! for one or more. A topic that a message is published on has no wildcard.

use std::fmt;

/// The longest topic or pattern, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;

/// A topic a message is published on: at least one token, no wildcard.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(std::sync::Arc<str>);

/// A pattern a subscription matches topics with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Token {
    Literal(String),
    /// `*`: any one token.
    One,
    /// `>`: one or more tokens; last only.
    Rest,
}

/// Why a topic or pattern is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty, or longer than [`MAX_TOPIC_LEN`].
    #[error("a topic has 1 to {MAX_TOPIC_LEN} bytes")]
    Length,
    /// A token that is empty or has a character outside `[A-Za-z0-9_-]`.
    #[error("bad token {0:?}: tokens are [A-Za-z0-9_-]+ joined by '.'")]
    Token(String),
    /// `*` or `>` where no wildcard may be: in a topic a message is published on.
    #[error("a topic to publish on has no wildcard")]
    Wildcard,
    /// `>` before the last token.
    #[error("'>' may only be the last token")]
    RestNotLast,
}

fn tokens(text: &str) -> Result<std::str::Split<'_, char>, TopicError> {
    if text.is_empty() || text.len() > MAX_TOPIC_LEN {
        return Err(TopicError::Length);
    }
    Ok(text.split('.'))
}

fn literal(token: &str) -> Result<String, TopicError> {
    let ok = !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(token.to_owned())
    } else {
        Err(TopicError::Token(token.to_owned()))
    }
}

impl Topic {
    /// Checks `text` is a topic a message may be published on.
    pub fn parse(text: &str) -> Result<Topic, TopicError> {
        for token in tokens(text)? {
            if token == "*" || token == ">" {
                return Err(TopicError::Wildcard);
            }
            literal(token)?;
        }
        Ok(Topic(text.into()))
    }

    /// The topic as published.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Pattern {
    /// Checks `text` is a pattern a subscription may match with.
    pub fn parse(text: &str) -> Result<Pattern, TopicError> {
        let parts: Vec<&str> = tokens(text)?.collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            tokens.push(match *part {
                "*" => Token::One,
                ">" if i + 1 == parts.len() => Token::Rest,
                ">" => return Err(TopicError::RestNotLast),
                other => Token::Literal(literal(other)?),
            });
        }
        Ok(Pattern {
            text: text.to_owned(),
            tokens,
        })
    }

    /// Whether a message on `topic` is for this pattern.
    pub fn matches(&self, topic: &Topic) -> bool {
        let mut topic = topic.0.split('.');
        for token in &self.tokens {
            match token {
                Token::Rest => return topic.next().is_some(),
                Token::One => {
                    if topic.next().is_none() {
                        return false;
                    }
                }
                Token::Literal(literal) => {
                    if topic.next() != Some(literal.as_str()) {
                        return false;
                    }
                }
            }
        }
        topic.next().is_none()
    }

    /// Whether the pattern has no wildcard: a topic that may also be published on.
    pub fn is_topic(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, topic: &str) -> bool {
        let pattern = Pattern::parse(pattern).expect("a pattern");
        pattern.matches(&Topic::parse(topic).expect("a topic"))
    }

    #[test]
    fn topics_are_tokens_joined_by_dots_without_wildcards() {
        for good in ["orders", "orders.created", "a-b_c.D9", &"x".repeat(255)] {
            assert!(Topic::parse(good).is_ok(), "{good}");
        }
        assert_eq!(Topic::parse(""), Err(TopicError::Length));
        assert_eq!(Topic::parse(&"x".repeat(256)), Err(TopicError::Length));
        assert_eq!(Topic::parse("orders.*"), Err(TopicError::Wildcard));
        assert_eq!(Topic::parse("orders.>"), Err(TopicError::Wildcard));
        for bad in ["orders.", ".orders", "a..b", "a b", "a/b", "é"] {
            assert!(
                matches!(Topic::parse(bad), Err(TopicError::Token(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn patterns_match_as_nats_subjects_do() {
        assert!(matches("orders.created", "orders.created"));
        assert!(!matches("orders.created", "orders.deleted"));
        assert!(!matches("orders", "orders.created"));
        assert!(matches("orders.*", "orders.created"));
        assert!(!matches("orders.*", "orders"));
        assert!(!matches("orders.*", "orders.created.eu"));
        assert!(matches("*.created", "orders.created"));
        assert!(matches("orders.>", "orders.created"));
        assert!(matches("orders.>", "orders.created.eu"));
        assert!(
            !matches("orders.>", "orders"),
            "'>' needs one token at least"
        );
        assert!(matches(">", "anything.at.all"));
        assert!(!matches("Orders", "orders"), "case matters, as in NATS");
    }

    #[test]
    fn the_rest_wildcard_is_last_only() {
        assert_eq!(Pattern::parse("a.>.b"), Err(TopicError::RestNotLast));
        assert!(Pattern::parse("a.*.b.>").is_ok());
        assert!(Pattern::parse("a.*").is_ok_and(|p| !p.is_topic()));
        assert!(Pattern::parse("a.b").is_ok_and(|p| p.is_topic()));
    }
}
