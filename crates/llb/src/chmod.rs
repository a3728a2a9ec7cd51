//! `--chmod` values of COPY and ADD: an octal mode or a chmod(1)-style symbolic mode.
//!
//! Part of the graph because a symbolic mode is applied to each copied entry's own mode when
//! the copy runs; the frontend parses it, the executor applies it.

use std::fmt;

/// A `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Chmod {
    /// An octal mode such as `0755`: the permission bits are replaced.
    Octal(u32),
    /// A symbolic mode such as `u=rwX,go=rX` or `+x`: applied to each file's current mode.
    Symbolic(Vec<SymbolicClause>),
}

/// One comma-separated clause of a symbolic mode: `go=rX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SymbolicClause {
    /// Which classes the clause changes, as the bits `0o700` (u), `0o070` (g), `0o007` (o).
    /// No class letter means all three, as BuildKit applies it (no umask).
    pub who: u32,
    /// The operator.
    pub op: SymbolicOp,
    /// The permissions the operator applies.
    pub perms: SymbolicPerms,
}

/// The operator of a symbolic clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolicOp {
    /// `+`: add the permissions.
    Add,
    /// `-`: remove them.
    Remove,
    /// `=`: set exactly them for the classes.
    Set,
}

/// The permissions of a symbolic clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SymbolicPerms {
    /// Letters from `rwxXst`.
    Letters {
        /// `r`.
        read: bool,
        /// `w`.
        write: bool,
        /// `x`.
        execute: bool,
        /// `X`: execute only for directories, or when some class already has execute.
        conditional_execute: bool,
        /// `s`: set-user-ID / set-group-ID.
        set_id: bool,
        /// `t`: sticky.
        sticky: bool,
    },
    /// One of `u`, `g`, `o`: copy that class's current permissions (given as `0o700`,
    /// `0o070` or `0o007`).
    CopyFrom(u32),
}

impl Chmod {
    /// Parses an octal (`755`, `0644`) or symbolic (`u+x`, `a=rX,u+w`) mode.
    pub fn parse(value: &str) -> Option<Chmod> {
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return u32::from_str_radix(value, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Chmod::Octal);
        }
        let mut clauses = Vec::new();
        for clause in value.split(',') {
            clauses.extend(parse_clause(clause)?);
        }
        Some(Chmod::Symbolic(clauses))
    }

    /// The mode a file with `mode` (permission and type-independent bits) gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => clauses
                .iter()
                .fold(mode & 0o7777, |m, c| c.apply(m, is_dir)),
        }
    }
}

impl SymbolicClause {
    fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let bits = match self.perms {
            SymbolicPerms::CopyFrom(class) => {
                let perms = (mode & class) >> class.trailing_zeros();
                (perms << 6 | perms << 3 | perms) & self.who
            }
            SymbolicPerms::Letters {
                read,
                write,
                execute,
                conditional_execute,
                set_id,
                sticky,
            } => {
                let mut rwx = 0;
                if read {
                    rwx |= 0o4;
                }
                if write {
                    rwx |= 0o2;
                }
                if execute || (conditional_execute && (is_dir || mode & 0o111 != 0)) {
                    rwx |= 0o1;
                }
                let mut bits = (rwx << 6 | rwx << 3 | rwx) & self.who;
                if set_id {
                    if self.who & 0o700 != 0 {
                        bits |= 0o4000;
                    }
                    if self.who & 0o070 != 0 {
                        bits |= 0o2000;
                    }
                }
                if sticky {
                    bits |= 0o1000;
                }
                bits
            }
        };
        match self.op {
            SymbolicOp::Add => mode | bits,
            SymbolicOp::Remove => mode & !bits,
            SymbolicOp::Set => {
                let mut cleared = mode & !self.who;
                if self.who & 0o700 != 0 {
                    cleared &= !0o4000;
                }
                if self.who & 0o070 != 0 {
                    cleared &= !0o2000;
                }
                cleared | bits
            }
        }
    }
}

/// One clause: `[ugoa]*` then one or more `[-+=][rwxXst]*|[-+=][ugo]`.
fn parse_clause(clause: &str) -> Option<Vec<SymbolicClause>> {
    let mut chars = clause.chars().peekable();
    let mut who = 0;
    while let Some(&c) = chars.peek() {
        who |= match c {
            'u' => 0o700,
            'g' => 0o070,
            'o' => 0o007,
            'a' => 0o777,
            _ => break,
        };
        chars.next();
    }
    if who == 0 {
        who = 0o777;
    }
    let mut out = Vec::new();
    while let Some(c) = chars.next() {
        let op = match c {
            '+' => SymbolicOp::Add,
            '-' => SymbolicOp::Remove,
            '=' => SymbolicOp::Set,
            _ => return None,
        };
        let perms = match chars.peek() {
            Some(&c @ ('u' | 'g' | 'o')) => {
                chars.next();
                SymbolicPerms::CopyFrom(match c {
                    'u' => 0o700,
                    'g' => 0o070,
                    _ => 0o007,
                })
            }
            _ => {
                let (mut read, mut write, mut execute, mut cond, mut set_id, mut sticky) =
                    (false, false, false, false, false, false);
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' => read = true,
                        'w' => write = true,
                        'x' => execute = true,
                        'X' => cond = true,
                        's' => set_id = true,
                        't' => sticky = true,
                        _ => break,
                    }
                    chars.next();
                }
                SymbolicPerms::Letters {
                    read,
                    write,
                    execute,
                    conditional_execute: cond,
                    set_id,
                    sticky,
                }
            }
        };
        out.push(SymbolicClause { who, op, perms });
    }
    if out.is_empty() {
        return None;
    }
    Some(out)
}

impl fmt::Display for Chmod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chmod::Octal(m) => write!(f, "{m:04o}"),
            Chmod::Symbolic(clauses) => {
                for (i, c) in clauses.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    for (bit, letter) in [(0o700, 'u'), (0o070, 'g'), (0o007, 'o')] {
                        if c.who & bit != 0 {
                            write!(f, "{letter}")?;
                        }
                    }
                    f.write_str(match c.op {
                        SymbolicOp::Add => "+",
                        SymbolicOp::Remove => "-",
                        SymbolicOp::Set => "=",
                    })?;
                    match c.perms {
                        SymbolicPerms::CopyFrom(0o700) => f.write_str("u")?,
                        SymbolicPerms::CopyFrom(0o070) => f.write_str("g")?,
                        SymbolicPerms::CopyFrom(_) => f.write_str("o")?,
                        SymbolicPerms::Letters {
                            read,
                            write,
                            execute,
                            conditional_execute,
                            set_id,
                            sticky,
                        } => {
                            for (on, l) in [
                                (read, 'r'),
                                (write, 'w'),
                                (execute, 'x'),
                                (conditional_execute, 'X'),
                                (set_id, 's'),
                                (sticky, 't'),
                            ] {
                                if on {
                                    write!(f, "{l}")?;
                                }
                            }
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_modes() {
        assert_eq!(Chmod::parse("755"), Some(Chmod::Octal(0o755)));
        assert_eq!(Chmod::parse("0644"), Some(Chmod::Octal(0o644)));
        assert_eq!(Chmod::parse("4755"), Some(Chmod::Octal(0o4755)));
        assert_eq!(Chmod::parse("789"), None);
        assert_eq!(Chmod::parse("17777"), None);
        assert_eq!(Chmod::parse(""), None);
    }

    #[test]
    fn symbolic_modes_apply_like_chmod() {
        let m = Chmod::parse("u=rwX,go=rX").unwrap();
        assert_eq!(m.apply(0o600, false), 0o644);
        assert_eq!(m.apply(0o700, false), 0o755);
        assert_eq!(m.apply(0o000, true), 0o755);
        assert_eq!(Chmod::parse("+x").unwrap().apply(0o644, false), 0o755);
        assert_eq!(Chmod::parse("go-w").unwrap().apply(0o666, false), 0o644);
        assert_eq!(Chmod::parse("u+s").unwrap().apply(0o755, false), 0o4755);
        assert_eq!(Chmod::parse("g=u").unwrap().apply(0o640, false), 0o660);
        assert_eq!(Chmod::parse("a=r,u+w").unwrap().apply(0o777, false), 0o644);
        assert_eq!(
            Chmod::parse("u=rwX,go=rX").unwrap().to_string(),
            "u=rwX,go=rX"
        );
    }

    #[test]
    fn bad_symbolic_modes_are_rejected() {
        for bad in ["u", "x", "u+q", "rw", "u+x,", ",", "z=r", "8"] {
            assert_eq!(Chmod::parse(bad), None, "{bad}");
        }
    }
}
