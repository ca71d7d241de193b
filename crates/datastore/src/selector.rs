//! Calico label selectors: `all()`, `has(k)`, `!has(k)`, `k == 'v'`,
//! `k != 'v'`, `k in {'a', 'b'}`, `k not in {...}`, joined with `&&`, `||`,
//! `!` and parentheses.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Not(Box<Selector>),
    And(Box<Selector>, Box<Selector>),
    Or(Box<Selector>, Box<Selector>),
}

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Selector::All => true,
            Selector::Has(k) => labels.contains_key(k),
            Selector::Eq(k, v) => labels.get(k) == Some(v),
            Selector::Ne(k, v) => labels.get(k) != Some(v),
            Selector::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Selector::NotIn(k, vs) => !labels.get(k).is_some_and(|l| vs.contains(l)),
            Selector::Not(s) => !s.matches(labels),
            Selector::And(a, b) => a.matches(labels) && b.matches(labels),
            Selector::Or(a, b) => a.matches(labels) || b.matches(labels),
        }
    }

    pub fn parse(s: &str) -> Result<Selector, String> {
        let toks = lex(s)?;
        if toks.is_empty() {
            return Ok(Selector::All);
        }
        let mut p = Parser { toks, pos: 0 };
        let sel = p.or()?;
        if p.pos != p.toks.len() {
            return Err(format!("unexpected {:?} in selector {s:?}", p.toks[p.pos]));
        }
        Ok(sel)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    And,
    Or,
    Not,
    Eq,
    Ne,
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
}

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < c.len() {
        let ch = c[i];
        match ch {
            ' ' | '\t' | '\n' => i += 1,
            '&' if c.get(i + 1) == Some(&'&') => {
                out.push(Tok::And);
                i += 2
            }
            '|' if c.get(i + 1) == Some(&'|') => {
                out.push(Tok::Or);
                i += 2
            }
            '=' if c.get(i + 1) == Some(&'=') => {
                out.push(Tok::Eq);
                i += 2
            }
            '!' if c.get(i + 1) == Some(&'=') => {
                out.push(Tok::Ne);
                i += 2
            }
            '!' => {
                out.push(Tok::Not);
                i += 1
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            '{' => {
                out.push(Tok::LBrace);
                i += 1
            }
            '}' => {
                out.push(Tok::RBrace);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            '\'' | '"' => {
                let q = ch;
                let start = i + 1;
                let end = c[start..]
                    .iter()
                    .position(|x| *x == q)
                    .ok_or("unterminated string in selector")?
                    + start;
                out.push(Tok::Str(c[start..end].iter().collect()));
                i = end + 1;
            }
            _ if ch.is_alphanumeric() || "_-./".contains(ch) => {
                let start = i;
                while i < c.len() && (c[i].is_alphanumeric() || "_-./".contains(c[i])) {
                    i += 1;
                }
                out.push(Tok::Ident(c[start..i].iter().collect()));
            }
            _ => return Err(format!("unexpected character {ch:?} in selector {s:?}")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(x) if x == t => Ok(()),
            other => Err(format!("expected {t:?} in selector, found {other:?}")),
        }
    }
    fn or(&mut self) -> Result<Selector, String> {
        let mut l = self.and()?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            l = Selector::Or(Box::new(l), Box::new(self.and()?));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Selector, String> {
        let mut l = self.unary()?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            l = Selector::And(Box::new(l), Box::new(self.unary()?));
        }
        Ok(l)
    }
    fn unary(&mut self) -> Result<Selector, String> {
        match self.next() {
            Some(Tok::Not) => Ok(Selector::Not(Box::new(self.unary()?))),
            Some(Tok::LParen) => {
                let s = self.or()?;
                self.expect(Tok::RParen)?;
                Ok(s)
            }
            Some(Tok::Ident(f))
                if (f == "all" || f == "has") && self.peek() == Some(&Tok::LParen) =>
            {
                self.pos += 1;
                if f == "all" {
                    self.expect(Tok::RParen)?;
                    return Ok(Selector::All);
                }
                let k = match self.next() {
                    Some(Tok::Ident(k)) | Some(Tok::Str(k)) => k,
                    t => return Err(format!("expected a label name in has(), found {t:?}")),
                };
                self.expect(Tok::RParen)?;
                Ok(Selector::Has(k))
            }
            Some(Tok::Ident(k)) => match self.next() {
                Some(Tok::Eq) => Ok(Selector::Eq(k, self.string()?)),
                Some(Tok::Ne) => Ok(Selector::Ne(k, self.string()?)),
                Some(Tok::Ident(w)) if w == "in" => Ok(Selector::In(k, self.set()?)),
                Some(Tok::Ident(w)) if w == "not" => match self.next() {
                    Some(Tok::Ident(w)) if w == "in" => Ok(Selector::NotIn(k, self.set()?)),
                    t => Err(format!("expected `in` after `not`, found {t:?}")),
                },
                t => Err(format!("expected ==, != or in after {k:?}, found {t:?}")),
            },
            t => Err(format!("unexpected {t:?} in selector")),
        }
    }
    fn string(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            t => Err(format!("expected a quoted value, found {t:?}")),
        }
    }
    fn set(&mut self) -> Result<Vec<String>, String> {
        self.expect(Tok::LBrace)?;
        let mut v = Vec::new();
        loop {
            match self.next() {
                Some(Tok::RBrace) => break,
                Some(Tok::Str(s)) => v.push(s),
                Some(Tok::Comma) => {}
                t => return Err(format!("expected a quoted value in set, found {t:?}")),
            }
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn calico_selectors() {
        let l = labels(&[("route-reflector", "true"), ("zone", "a")]);
        for (s, want) in [
            ("all()", true),
            ("", true),
            ("has(route-reflector)", true),
            ("!has(route-reflector)", false),
            ("route-reflector == 'true'", true),
            ("zone != 'a'", false),
            ("zone in {'a', 'b'}", true),
            ("zone not in {'a'}", false),
            (
                "has(zone) && zone == 'b' || route-reflector == 'true'",
                true,
            ),
            (
                "has(zone) && (zone == 'b' || route-reflector == 'false')",
                false,
            ),
        ] {
            assert_eq!(Selector::parse(s).unwrap().matches(&l), want, "{s}");
        }
        assert!(Selector::parse("zone = 'a'").is_err());
        assert!(Selector::parse("has(zone").is_err());
        assert!(Selector::parse("zone == 'a").is_err());
    }
}
