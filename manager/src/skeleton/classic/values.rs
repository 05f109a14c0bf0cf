//! Values of the original format: file references, mappings, iteration keys and the
//! distribution/polynomial specs of lengths and sizes (docs/skeleton.md#classic-distributions,
//! docs/skeleton.md#classic-polynomial).

use super::super::diag::Diagnostic;
use super::defs::{FileKind, FileRef, Mapping, PolySrc, Source, ValueSpec};
use super::parse::{Entry, Parser};

impl Parser<'_> {
    pub(super) fn file_ref(&self, text: &str) -> Option<FileRef> {
        let (stage, rest) = text.trim().split_once('.')?;
        let (kind, index) = rest.rsplit_once('_')?;
        let kind = match kind {
            "Input" => FileKind::Input,
            "Output" => FileKind::Output,
            _ => return None,
        };
        let index: usize = index.parse().ok().filter(|i| *i >= 1)?;
        let ok = !stage.is_empty() && stage.chars().all(|c| c.is_alphanumeric() || c == '_');
        ok.then(|| FileRef {
            stage: stage.to_string(),
            kind,
            index,
        })
    }

    pub(super) fn source(&self, e: &Entry) -> Result<Source, Diagnostic> {
        if e.value == "filesystem" {
            return Ok(Source::Filesystem);
        }
        self.file_ref(&e.value).map(Source::File).ok_or_else(|| {
            self.err(
                e.line,
                format!(
                    "`{}` must be `filesystem`, `<Stage>.Output_<j>` or `<Stage>.Input_<j>`, found `{}`",
                    e.key, e.value
                ),
            )
        })
    }

    pub(super) fn mapping(&self, e: &Entry) -> Result<Mapping, Diagnostic> {
        let (kind, rest) = e
            .value
            .split_once(char::is_whitespace)
            .unwrap_or((&e.value, ""));
        let rest = rest.trim();
        match kind {
            "combination" => {
                let tokens: Vec<&str> = rest.split_whitespace().collect();
                let parsed = match tokens.as_slice() {
                    [r, m] => self.file_ref(r).zip(m.parse::<usize>().ok()),
                    _ => None,
                };
                let (from, m) = parsed.ok_or_else(|| {
                    self.err(
                        e.line,
                        format!(
                            "expected `Input_Task_Mapping = combination <Stage>.Output_<j> <m>`, e.g. `combination Stage_1.Output_1 2`, found `{}`",
                            e.value
                        ),
                    )
                })?;
                Ok(Mapping::Combination { from, m })
            }
            "external" if !rest.is_empty() => Ok(Mapping::External {
                script: rest.to_string(),
            }),
            _ => Err(self.err(
                e.line,
                format!(
                    "expected `Input_Task_Mapping = combination <Stage>.Output_<j> <m>` or `external <script>`, found `{}`",
                    e.value
                ),
            )),
        }
    }

    pub(super) fn iteration_stages(&mut self, e: &Entry) -> Vec<String> {
        let names: Vec<String> = e.value.split(',').map(|s| s.trim().to_string()).collect();
        if e.value.split(", ").count() != names.len() {
            self.warn(
                e.line,
                format!("`Iteration_Stages = {}`: read as {}; the original tool splits on `, ` (comma and one space) only", e.value, names.join(", ")),
            );
        }
        names
    }

    pub(super) fn substitute(
        &self,
        e: &Entry,
        stage: &str,
    ) -> Result<(usize, FileRef), Diagnostic> {
        let parsed = e
            .value
            .split_once(',')
            .and_then(|(a, b)| self.file_ref(a).zip(self.file_ref(b)));
        match parsed {
            Some((src, target)) if src.kind == FileKind::Input => {
                if src.stage != stage {
                    return Err(self.err(
                        e.line,
                        format!("`Iteration_Substitute` must replace an input of the iterated stage `{stage}`, found `{}`", src.stage),
                    ));
                }
                Ok((src.index, target))
            }
            _ => Err(self.err(
                e.line,
                format!(
                    "expected `Iteration_Substitute = <Stage>.Input_<n>, <Stage>.Output_<m>`, found `{}`",
                    e.value
                ),
            )),
        }
    }

    pub(super) fn value(&mut self, e: &Entry, allow: Allow) -> Result<ValueSpec, Diagnostic> {
        let v = e.value.as_str();
        let (dist, param) = match v.split_once(char::is_whitespace) {
            Some((d, p)) => (d, p.trim()),
            None => {
                if c_number(v).1 && !v.is_empty() {
                    self.warn(
                        e.line,
                        format!("`{} = {v}` has no distribution; read as `uniform {v}` (the original tool would fail)", e.key),
                    );
                    return Ok(ValueSpec::Uniform {
                        text: v.to_string(),
                        num: c_number(v).0,
                    });
                }
                return Err(self.err(
                    e.line,
                    format!("expected `{} = <distribution> <parameters>`, e.g. `uniform 10`, found `{v}`", e.key),
                ));
            }
        };
        match dist {
            "uniform" => {
                let (num, clean) = c_number(param);
                if !clean {
                    self.warn(
                        e.line,
                        format!("`uniform {param}` is not a plain number; the synthetic task reads it as {num} (as task.c's atof/atoi do)"),
                    );
                }
                Ok(ValueSpec::Uniform {
                    text: param.to_string(),
                    num,
                })
            }
            "normal" | "gauss" | "lognorm" | "triangular" => {
                let (a, b, rest) = self.bracket(e, param)?;
                let unit: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                Ok(match dist {
                    "lognorm" => ValueSpec::LogNorm {
                        mu: a,
                        sigma: b,
                        unit,
                    },
                    "triangular" => ValueSpec::Triangular {
                        low: a,
                        high: b,
                        unit,
                    },
                    _ => ValueSpec::Normal {
                        mean: a,
                        stdev: b,
                        unit,
                    },
                })
            }
            "polynomial" if allow != Allow::Distribution => {
                let (a, b, rest) = self.bracket(e, param)?;
                let (rest, doubled) = match rest.strip_prefix(']') {
                    Some(r) => (r.trim(), true),
                    None => (rest.trim(), false),
                };
                let src = match rest {
                    "Length" if allow == Allow::Output => Some(PolySrc::Length),
                    s => s
                        .strip_prefix("Input_")
                        .and_then(|k| k.parse::<usize>().ok())
                        .filter(|k| *k >= 1)
                        .map(PolySrc::Input),
                };
                let Some(src) = src else {
                    let want = if allow == Allow::Output {
                        "`Input_<k>` or `Length`"
                    } else {
                        "`Input_<k>`"
                    };
                    return Err(self.err(
                        e.line,
                        format!(
                            "`{}`: a polynomial depends on {want}, found `{rest}`",
                            e.key
                        ),
                    ));
                };
                if allow == Allow::Length && !doubled {
                    self.warn(
                        e.line,
                        "`polynomial [a, b] Input_<k>` is rejected by the original tool at HEAD (its Task_Length regex wants `]]`, docs/skeleton.md#classic-polynomial); read as a * x^b as earlier versions did",
                    );
                }
                Ok(ValueSpec::Polynomial { a, b, src })
            }
            "polynomial" => Err(self.err(
                e.line,
                format!(
                    "`{}` takes a statistical distribution, not a polynomial",
                    e.key
                ),
            )),
            other => {
                let poly = if allow == Allow::Distribution {
                    ""
                } else {
                    ", polynomial"
                };
                Err(self.err(
                    e.line,
                    format!("unknown distribution `{other}`; expected uniform, normal, gauss, lognorm, triangular{poly}"),
                ))
            }
        }
    }

    /// `[A, B]` followed by the rest of the text; warns where the original regex would not match.
    pub(super) fn bracket<'v>(
        &mut self,
        e: &Entry,
        param: &'v str,
    ) -> Result<(f64, f64, &'v str), Diagnostic> {
        let bad = || {
            self.err(
                e.line,
                format!("`{}`: expected two non-negative numbers in brackets, e.g. `[10, 2]`, found `{param}`", e.key),
            )
        };
        let inner_end = param.find(']').ok_or_else(bad)?;
        let inner = param.strip_prefix('[').ok_or_else(bad)?;
        let inner = &inner[..inner_end - 1];
        let (a, b) = inner.split_once(',').ok_or_else(bad)?;
        let num = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
        };
        let (Some(x), Some(y)) = (num(a), num(b)) else {
            return Err(bad());
        };
        let strict = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
        if !(strict(a) && b.starts_with(' ') && strict(&b[1..])) {
            self.warn(
                e.line,
                format!("`[{inner}]` read as [{x}, {y}]; the original tool needs exactly `[A, B]` (comma and one space) and would fail"),
            );
        }
        Ok((x, y, &param[inner_end + 1..]))
    }
}

/// Which value forms a key accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Allow {
    Distribution,
    Length,
    Output,
}

/// C `atof` on a value: the number at the start of `s`, and whether `s` was only that number.
pub fn c_number(s: &str) -> (f64, bool) {
    let t = s.trim_start();
    let bytes = t.as_bytes();
    let mut end = 0;
    let mut best = 0;
    if end < bytes.len() && (bytes[end] == b'+' || bytes[end] == b'-') {
        end += 1;
    }
    let mut digits = false;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
        digits = true;
        best = end;
    }
    if end < bytes.len() && bytes[end] == b'.' {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
            digits = true;
            best = end;
        }
        if digits {
            best = end;
        }
    }
    if digits && end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut e = end + 1;
        if e < bytes.len() && (bytes[e] == b'+' || bytes[e] == b'-') {
            e += 1;
        }
        let start = e;
        while e < bytes.len() && bytes[e].is_ascii_digit() {
            e += 1;
        }
        if e > start {
            best = e;
        }
    }
    if !digits {
        return (0.0, false);
    }
    let v = t[..best].parse::<f64>().unwrap_or(0.0);
    (v, best == s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_number_reads_a_numeric_prefix_like_atof() {
        assert_eq!(c_number("10"), (10.0, true));
        assert_eq!(c_number("1.5"), (1.5, true));
        assert_eq!(c_number("10s"), (10.0, false));
        assert_eq!(c_number("146.27B"), (146.27, false));
        assert_eq!(c_number("1e3"), (1000.0, true));
        assert_eq!(c_number("abc"), (0.0, false));
    }
}
