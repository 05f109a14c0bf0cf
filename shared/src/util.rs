//! Small helpers every component uses the same way.

use std::time::Duration;

/// Reconnect/retry backoff: 100 ms doubling per attempt, capped at 3 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(5)).min(3_000))
}

/// A service URL fit for messages: the password (if any) is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..s + 3], &creds[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://:secret@host:6379/"),
            "redis://:***@host:6379/"
        );
        assert_eq!(redact_url("amqp://host"), "amqp://host");
    }

    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(400));
        assert_eq!(backoff(30), Duration::from_secs(3));
    }
}
