pub mod ceg;
pub mod data;
pub mod fit;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod sample;
pub mod sweep;
pub mod train;

/// A clap value parser for a count flag with an upper limit, checked before
/// anything is allocated for it. clap prefixes the error with the flag's
/// name (`invalid value '100001' for '--points <POINTS>': …`); the message
/// states the maximum and `why`, so the user knows the fix.
pub fn count_at_most(
    max: usize,
    what: &'static str,
    why: &'static str,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let n: usize = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a whole number of {what} (0 to {max})"))?;
        if n > max {
            return Err(format!("{n} {what} is more than the maximum {max}: {why}"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_above_the_limit_are_refused_with_the_maximum() {
        let p = count_at_most(10, "rows", "a table no one reads");
        assert_eq!(p("10"), Ok(10));
        assert_eq!(p(" 0 "), Ok(0));
        let e = p("11").unwrap_err();
        assert!(
            e.contains("maximum 10") && e.contains("a table no one reads"),
            "{e}"
        );
        assert!(p("1e9").unwrap_err().contains("whole number of rows"));
        assert!(p("-1").is_err());
    }
}
