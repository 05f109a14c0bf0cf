//! SLURM hostlist expressions: `nid[001-003,007],login1` -> nid001 nid002 nid003 nid007
//! login1. Several bracket groups in one name multiply (`r[1-2]n[1-2]`); zero padding of
//! the range start is kept.

/// Expands a hostlist expression into host names, in order. `Err` names the problem.
pub fn expand(expr: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    for item in split_top_level(expr)? {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        hosts.extend(expand_one(item)?);
    }
    Ok(hosts)
}

/// Splits at commas outside brackets.
fn split_top_level(expr: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in expr.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth < 0 {
                    return Err(format!("unbalanced `]` in hostlist `{expr}`"));
                }
            }
            ',' if depth == 0 => {
                parts.push(&expr[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced `[` in hostlist `{expr}`"));
    }
    parts.push(&expr[start..]);
    Ok(parts)
}

fn expand_one(item: &str) -> Result<Vec<String>, String> {
    let Some(open) = item.find('[') else {
        return Ok(vec![item.to_string()]);
    };
    let close = item[open..]
        .find(']')
        .map(|i| i + open)
        .ok_or_else(|| format!("unbalanced `[` in `{item}`"))?;
    let prefix = &item[..open];
    let rest = expand_one(&item[close + 1..])?;
    let mut out = Vec::new();
    for range in item[open + 1..close].split(',') {
        for value in expand_range(range.trim(), item)? {
            for suffix in &rest {
                out.push(format!("{prefix}{value}{suffix}"));
            }
        }
    }
    Ok(out)
}

fn expand_range(range: &str, item: &str) -> Result<Vec<String>, String> {
    let bad = || format!("bad range `{range}` in `{item}`");
    match range.split_once('-') {
        None => {
            if range.is_empty() || !range.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            Ok(vec![range.to_string()])
        }
        Some((lo, hi)) => {
            let width = lo.len();
            let a: u64 = lo.parse().map_err(|_| bad())?;
            let b: u64 = hi.parse().map_err(|_| bad())?;
            if b < a || b - a > 1_000_000 {
                return Err(bad());
            }
            Ok((a..=b).map(|n| format!("{n:0width$}")).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> Vec<String> {
        expand(s).unwrap()
    }

    #[test]
    fn plain_names_and_lists() {
        assert_eq!(e("vm"), ["vm"]);
        assert_eq!(e("a,b"), ["a", "b"]);
    }

    #[test]
    fn ranges_keep_zero_padding_and_mix_with_single_values() {
        assert_eq!(
            e("nid[001-003,007],login1"),
            ["nid001", "nid002", "nid003", "nid007", "login1"]
        );
        assert_eq!(e("n[9-11]"), ["n9", "n10", "n11"]);
    }

    #[test]
    fn several_bracket_groups_multiply() {
        assert_eq!(e("r[1-2]n[1-2]"), ["r1n1", "r1n2", "r2n1", "r2n2"]);
        assert_eq!(e("x[1-2]-ib"), ["x1-ib", "x2-ib"]);
    }

    #[test]
    fn malformed_expressions_are_errors() {
        assert!(expand("nid[001-003").is_err());
        assert!(expand("nid]1[").is_err());
        assert!(expand("nid[3-1]").is_err());
        assert!(expand("nid[a-b]").is_err());
    }
}
