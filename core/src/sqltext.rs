//! Small, pure helpers over SQL text, used to show the safe SQL for the statement the user
//! actually wrote. They understand just enough of PostgreSQL's lexical rules (comments,
//! quoted identifiers, string and dollar-quoted literals, parentheses) to find token
//! boundaries; they never need to understand the statement itself, the parser already did.

/// Byte ranges of the statement's top-level tokens are found by this scanner.
struct Scanner<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(s: &'a str, pos: usize) -> Self {
        Scanner { s: s.as_bytes(), pos }
    }

    /// Skips whitespace, `-- line` comments and nested `/* block */` comments.
    fn skip_trivia(&mut self) {
        loop {
            while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
                self.pos += 1;
            }
            if self.s[self.pos..].starts_with(b"--") {
                while self.pos < self.s.len() && self.s[self.pos] != b'\n' {
                    self.pos += 1;
                }
            } else if self.s[self.pos..].starts_with(b"/*") {
                let mut depth = 0;
                while self.pos < self.s.len() {
                    if self.s[self.pos..].starts_with(b"/*") {
                        depth += 1;
                        self.pos += 2;
                    } else if self.s[self.pos..].starts_with(b"*/") {
                        depth -= 1;
                        self.pos += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        self.pos += 1;
                    }
                }
            } else {
                return;
            }
        }
    }

    /// Consumes `word` (case-insensitive) when it is the next token.
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_trivia();
        let end = self.pos + word.len();
        if end <= self.s.len()
            && self.s[self.pos..end].eq_ignore_ascii_case(word.as_bytes())
            && (end == self.s.len() || !is_ident_char(self.s[end]))
        {
            self.pos = end;
            true
        } else {
            false
        }
    }

    /// Consumes one identifier (plain or double-quoted). Returns false if none is next.
    fn identifier(&mut self) -> bool {
        self.skip_trivia();
        if self.pos >= self.s.len() {
            return false;
        }
        if self.s[self.pos] == b'"' {
            self.skip_quoted(b'"');
            true
        } else if is_ident_start(self.s[self.pos]) {
            while self.pos < self.s.len() && is_ident_char(self.s[self.pos]) {
                self.pos += 1;
            }
            true
        } else {
            false
        }
    }

    /// Skips a literal delimited by `q`, where a doubled `q` stands for itself.
    fn skip_quoted(&mut self, q: u8) {
        self.pos += 1;
        while self.pos < self.s.len() {
            if self.s[self.pos] == q {
                if self.pos + 1 < self.s.len() && self.s[self.pos + 1] == q {
                    self.pos += 2;
                    continue;
                }
                self.pos += 1;
                return;
            }
            self.pos += 1;
        }
    }

    /// Skips `$tag$ ... $tag$` if one starts here; returns whether it did.
    fn skip_dollar_quoted(&mut self) -> bool {
        let start = self.pos;
        let mut end = start + 1;
        while end < self.s.len() && (is_ident_char(self.s[end]) && self.s[end] != b'$') {
            end += 1;
        }
        if end >= self.s.len() || self.s[end] != b'$' {
            return false;
        }
        let tag = &self.s[start..=end];
        let mut p = end + 1;
        while p + tag.len() <= self.s.len() {
            if &self.s[p..p + tag.len()] == tag {
                self.pos = p + tag.len();
                return true;
            }
            p += 1;
        }
        self.pos = self.s.len();
        true
    }

    /// Advances to the next top-level `,` or `;` (or the end) and returns its position.
    fn find_clause_end(&mut self) -> usize {
        let mut depth = 0usize;
        while self.pos < self.s.len() {
            self.skip_trivia();
            if self.pos >= self.s.len() {
                break;
            }
            match self.s[self.pos] {
                b'\'' => self.skip_quoted(b'\''),
                b'"' => self.skip_quoted(b'"'),
                b'$' => {
                    if !self.skip_dollar_quoted() {
                        self.pos += 1;
                    }
                }
                b'(' => {
                    depth += 1;
                    self.pos += 1;
                }
                b')' => {
                    depth = depth.saturating_sub(1);
                    self.pos += 1;
                }
                b',' | b';' if depth == 0 => return self.pos,
                _ => self.pos += 1,
            }
        }
        self.s.len()
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The bounds `[start, end)` of one statement inside a query string, as PostgreSQL's
/// `CleanQuerytext` computes them (src/backend/utils/misc/queryjumble.c): `location < 0`
/// means "unknown, use the whole string", `len <= 0` means "to the end of the string";
/// leading and trailing whitespace is dropped.
pub fn clean_query_bounds(query: &[u8], location: i32, len: i32) -> (usize, usize) {
    let (mut start, mut end) = match usize::try_from(location) {
        Ok(loc) if loc <= query.len() => {
            let end = match usize::try_from(len) {
                Ok(l) if l > 0 => (loc + l).min(query.len()),
                _ => query.len(),
            };
            (loc, end)
        }
        _ => (0, query.len()),
    };
    // scanner_isspace: space, tab, newline, carriage return, form feed
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c');
    while start < end && is_space(query[start]) {
        start += 1;
    }
    while end > start && is_space(query[end - 1]) {
        end -= 1;
    }
    (start, end)
}

/// Where a statement starts under the rule of PostgreSQL 17 and earlier, given where
/// PostgreSQL 18 says it starts. 18 starts a statement at its first token (gram.y:
/// `makeRawStmt($3, @3)`), earlier versions right after the previous statement's semicolon,
/// or at the start of the string for the first statement (`makeRawStmt($3, @2 + 1)`,
/// `makeRawStmt($1, 0)`): under 18 the comments before a statement fall outside its bounds.
///
/// Returns the position after the nearest semicolon before `location` that only whitespace
/// and comments follow up to `location`, else 0 when only whitespace and comments precede
/// `location`, else `location`. The real separator is always found: between it and the
/// next statement's first token the parser saw no token. A semicolon inside a comment of
/// that gap can be taken for it when what follows it up to `location` also reads as
/// comments; the bounds then hold the end of that comment only, never text outside the
/// comments. At most `MAX_SEMICOLONS_TRIED` semicolons are tried, so that the cost stays
/// within a small multiple of the gap's length; past them, `location`.
pub fn start_after_previous_statement(query: &[u8], location: usize) -> usize {
    const MAX_SEMICOLONS_TRIED: usize = 64;
    let location = location.min(query.len());
    let mut tried = 0;
    for q in (0..location).rev() {
        if query[q] == b';' {
            if only_whitespace_and_comments(&query[q + 1..location]) {
                return q + 1;
            }
            tried += 1;
            if tried == MAX_SEMICOLONS_TRIED {
                return location;
            }
        }
    }
    if only_whitespace_and_comments(&query[..location]) {
        0
    } else {
        location
    }
}

/// Whether `text` holds nothing but whitespace and complete comments, as scan.l reads
/// them: `--` to the end of the line (`\n` or `\r`), `/* */` nested.
fn only_whitespace_and_comments(text: &[u8]) -> bool {
    let mut i = 0;
    while i < text.len() {
        match (text[i], text.get(i + 1)) {
            (b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c', _) => i += 1,
            (b'-', Some(b'-')) => {
                while i < text.len() && !matches!(text[i], b'\n' | b'\r') {
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let mut depth = 0usize;
                loop {
                    match (text.get(i), text.get(i + 1)) {
                        (Some(b'/'), Some(b'*')) => {
                            depth += 1;
                            i += 2;
                        }
                        (Some(b'*'), Some(b'/')) => {
                            depth -= 1;
                            i += 2;
                            if depth == 0 {
                                break;
                            }
                        }
                        (Some(_), _) => i += 1,
                        (None, _) => return false,
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

/// Removes trailing whitespace and semicolons.
pub fn trim_statement(stmt: &str) -> &str {
    stmt.trim_end_matches(|c: char| c.is_whitespace() || c == ';').trim_start()
}

/// `CREATE [UNIQUE] INDEX ...` → `CREATE [UNIQUE] INDEX CONCURRENTLY ...`, keeping the rest of
/// the text (names, columns, WHERE, WITH) exactly as written. `None` when the text does not
/// start that way (the caller then shows a generic hint).
pub fn add_concurrently(stmt: &str) -> Option<String> {
    let stmt = trim_statement(stmt);
    let mut sc = Scanner::new(stmt, 0);
    if !sc.keyword("create") {
        return None;
    }
    sc.keyword("unique");
    if !sc.keyword("index") {
        return None;
    }
    Some(insert_concurrently(stmt, sc))
}

/// `stmt` with CONCURRENTLY at the scanner's position (unless it is there already),
/// starting at the first keyword: a leading comment is kept out of the suggestion.
fn insert_concurrently(stmt: &str, mut sc: Scanner) -> String {
    let at = sc.pos;
    let mut head = Scanner::new(stmt, 0);
    head.skip_trivia();
    if sc.keyword("concurrently") {
        return stmt[head.pos..].to_string();
    }
    format!("{} CONCURRENTLY{}", &stmt[head.pos..at], &stmt[at..])
}

/// `REINDEX [ (options) ] { INDEX | TABLE | SCHEMA | DATABASE } name` →
/// the same with CONCURRENTLY after the object kind (the grammar's `opt_concurrently`).
pub fn add_reindex_concurrently(stmt: &str) -> Option<String> {
    let stmt = trim_statement(stmt);
    let mut sc = Scanner::new(stmt, 0);
    if !sc.keyword("reindex") {
        return None;
    }
    sc.skip_trivia();
    if sc.pos < sc.s.len() && sc.s[sc.pos] == b'(' {
        // skip the balanced option list
        let mut depth = 0;
        while sc.pos < sc.s.len() {
            match sc.s[sc.pos] {
                b'(' => depth += 1,
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        sc.pos += 1;
                        break;
                    }
                }
                b'\'' => {
                    sc.skip_quoted(b'\'');
                    continue;
                }
                _ => {}
            }
            sc.pos += 1;
        }
    }
    if !["index", "table", "schema", "database"].iter().any(|k| sc.keyword(k)) {
        return None;
    }
    Some(insert_concurrently(stmt, sc))
}

/// The text of a table constraint written in an ALTER TABLE, starting at `start` (the
/// parse node's `location`, which points at `CONSTRAINT` or at the constraint keyword)
/// and ending before the next top-level comma or semicolon.
/// Returns `(name_as_written, definition)`; the definition excludes `CONSTRAINT name`.
pub fn constraint_clause(stmt: &str, start: usize) -> Option<(Option<String>, String)> {
    if start >= stmt.len() || !stmt.is_char_boundary(start) {
        return None;
    }
    let mut sc = Scanner::new(stmt, start);
    let mut name = None;
    if sc.keyword("constraint") {
        sc.skip_trivia();
        let name_start = sc.pos;
        if !sc.identifier() {
            return None;
        }
        name = Some(stmt[name_start..sc.pos].to_string());
    }
    sc.skip_trivia();
    let def_start = sc.pos;
    let end = sc.find_clause_end();
    let def = stmt[def_start..end].trim();
    if def.is_empty() {
        return None;
    }
    Some((name, def.to_string()))
}

/// `sql` with every identifier token equal to `old` (as `quote_identifier` renders it) inside
/// the byte range `within` replaced by `new`. Meant for definitions PostgreSQL deparses
/// (`pg_get_indexdef`, `pg_get_constraintdef`, `deparse_expression`), where a column appears as a
/// bare or double-quoted identifier and keywords are upper case. Left alone: string and
/// dollar-quoted literals, comments, other quoted identifiers, and tokens that are not a
/// column reference there: a qualified name's later parts (after `.`), a type (after `::`), a
/// function name (before `(`), a schema or table name (before `.`), an access method (after
/// `USING`) and a collation (after `COLLATE`).
pub fn replace_identifier(sql: &str, within: std::ops::Range<usize>, old: &str, new: &str) -> String {
    let end = within.end.min(sql.len());
    let mut sc = Scanner::new(sql, within.start.min(end));
    let mut out = String::with_capacity(sql.len() + 16);
    out.push_str(&sql[..sc.pos]);
    let mut copied = sc.pos;
    // The previous significant token, to tell `.x`, `::x`, `USING x`, `COLLATE x` apart.
    let mut prev: &[u8] = b"";
    while sc.pos < end {
        sc.skip_trivia();
        if sc.pos >= end {
            break;
        }
        let start = sc.pos;
        match sc.s[sc.pos] {
            b'\'' => {
                sc.skip_quoted(b'\'');
                prev = b"'";
            }
            b'$' => {
                if !sc.skip_dollar_quoted() {
                    sc.pos += 1;
                }
                prev = b"$";
            }
            b'"' => {
                sc.skip_quoted(b'"');
                let token = &sql[start..sc.pos.min(end)];
                if token == old && replaceable(sc.s, prev, sc.pos) {
                    out.push_str(&sql[copied..start]);
                    out.push_str(new);
                    copied = sc.pos;
                }
                prev = b"\"";
            }
            b if is_ident_start(b) => {
                while sc.pos < sc.s.len() && is_ident_char(sc.s[sc.pos]) {
                    sc.pos += 1;
                }
                let token = &sql[start..sc.pos];
                if token == old && replaceable(sc.s, prev, sc.pos) {
                    out.push_str(&sql[copied..start]);
                    out.push_str(new);
                    copied = sc.pos;
                }
                prev = &sc.s[start..sc.pos];
            }
            b':' if sc.s[sc.pos..].starts_with(b"::") => {
                sc.pos += 2;
                prev = b"::";
            }
            _ => {
                prev = &sc.s[sc.pos..sc.pos + 1];
                sc.pos += 1;
            }
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// Whether an identifier token that ends at `end`, after the significant token `prev`, is a
/// column reference (see [`replace_identifier`]).
fn replaceable(s: &[u8], prev: &[u8], end: usize) -> bool {
    if matches!(prev, b"." | b"::" | b"USING" | b"COLLATE") {
        return false;
    }
    let mut next = Scanner { s, pos: end };
    next.skip_trivia();
    !matches!(s.get(next.pos), Some(b'(') | Some(b'.'))
}

/// A `pg_get_indexdef` definition (`CREATE [UNIQUE] INDEX name ON [ONLY] table USING am (...)
/// ...`) rewritten for a copy on another column: CONCURRENTLY added, the index named
/// `new_name`, and `column` replaced by `new_column` after `USING`. `None` when the text is
/// not shaped that way.
pub fn index_definition_on(def: &str, new_name: &str, column: &str, new_column: &str) -> Option<String> {
    let def = trim_statement(def);
    let mut sc = Scanner::new(def, 0);
    if !sc.keyword("create") {
        return None;
    }
    sc.keyword("unique");
    if !sc.keyword("index") {
        return None;
    }
    sc.keyword("concurrently");
    let head = &def[..sc.pos];
    if !sc.identifier() {
        return None;
    }
    let rest = &def[sc.pos..];
    let using = rest.find(" USING ")?;
    let rest = replace_identifier(rest, using..rest.len(), column, new_column);
    let head =
        if head.to_ascii_lowercase().contains("concurrently") { head.to_string() } else { format!("{} CONCURRENTLY", head.trim_end()) };
    Some(format!("{head} {new_name}{rest}"))
}

/// Whether `expr` is one parenthesized expression: `(a) AND (b)` is not, `((a) AND (b))` is.
/// Quotes, literals and comments are skipped as in the rest of this module.
pub fn is_parenthesized(expr: &str) -> bool {
    let expr = expr.trim();
    if !expr.starts_with('(') || !expr.ends_with(')') {
        return false;
    }
    let mut sc = Scanner::new(expr, 0);
    let mut depth = 0usize;
    while sc.pos < sc.s.len() {
        match sc.s[sc.pos] {
            b'\'' => {
                sc.skip_quoted(b'\'');
                continue;
            }
            b'"' => {
                sc.skip_quoted(b'"');
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return sc.pos == expr.len() - 1;
                }
            }
            _ => {}
        }
        sc.pos += 1;
    }
    false
}

/// `name` as an SQL identifier: as is when it is a plain lower-case name, else double-quoted
/// (`quote_identifier`'s rule, without its keyword list: callers build names that end in a
/// suffix no keyword has).
pub fn quote_if_needed(name: &str) -> String {
    let plain = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// A quoted identifier with `suffix` appended inside its quotes, if it has any (`"Ab"` →
/// `"Ab_new"`, `ab` → `ab_new`), cut to PostgreSQL's 63-byte limit (NAMEDATALEN - 1) before the
/// suffix.
pub fn suffixed_identifier(quoted: &str, suffix: &str) -> String {
    let (inner, q) = match quoted.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => (inner, "\""),
        None => (quoted, ""),
    };
    let mut base = inner.to_string();
    while base.replace("\"\"", "\"").len() + suffix.len() > 63 {
        base.pop();
    }
    format!("{q}{base}{suffix}{q}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_replaced_only_where_they_name_the_column() {
        let def = "CHECK (((status)::text <> 'status'::text) AND (status_code > 0) AND (lower(status) <> t.status))";
        assert_eq!(
            replace_identifier(def, 0..def.len(), "status", "status_new"),
            "CHECK (((status_new)::text <> 'status'::text) AND (status_code > 0) AND (lower(status_new) <> t.status))"
        );
        // A type, a function, a qualifier, an access method and a collation of the same name stay.
        let def = "CREATE INDEX i ON public.x USING x (x COLLATE \"x\", x(x), x.y, (y)::x)";
        assert_eq!(
            replace_identifier(def, 0..def.len(), "x", "x_new"),
            "CREATE INDEX i ON public.x USING x (x_new COLLATE \"x\", x(x_new), x.y, (y)::x)"
        );
        let def = "FOREIGN KEY (\"Customer\") REFERENCES customer(\"Customer\")";
        let end = def.find(" REFERENCES ").unwrap();
        assert_eq!(
            replace_identifier(def, 0..end, "\"Customer\"", "\"Customer_new\""),
            "FOREIGN KEY (\"Customer_new\") REFERENCES customer(\"Customer\")"
        );
        assert_eq!(replace_identifier("a $$a$$ /* a */ a", 0..17, "a", "b"), "b $$a$$ /* a */ b");
    }

    #[test]
    fn index_definitions_are_rewritten_for_the_new_column() {
        assert_eq!(
            index_definition_on(
                "CREATE UNIQUE INDEX shop_order_pkey ON public.shop_order USING btree (id) INCLUDE (id2) WHERE (id > 0)",
                "shop_order_pkey_new",
                "id",
                "id_new"
            )
            .unwrap(),
            "CREATE UNIQUE INDEX CONCURRENTLY shop_order_pkey_new ON public.shop_order USING btree (id_new) INCLUDE (id2) WHERE (id_new > 0)"
        );
        assert_eq!(index_definition_on("CREATE TABLE t (a int)", "x", "a", "b"), None);
    }

    #[test]
    fn parenthesized_expressions_are_told_apart() {
        assert!(is_parenthesized("((id IS NOT NULL) AND (id < '1'::bigint))"));
        assert!(is_parenthesized("(a = ')')"));
        assert!(!is_parenthesized("(id IS NOT NULL) AND (id < 1)"));
        assert!(!is_parenthesized("id > 0"));
    }

    #[test]
    fn suffixes_go_inside_the_quotes_and_respect_the_name_length() {
        assert_eq!(suffixed_identifier("ab", "_new"), "ab_new");
        assert_eq!(suffixed_identifier("\"Ab\"", "_new"), "\"Ab_new\"");
        assert_eq!(suffixed_identifier(&"a".repeat(63), "_new").len(), 63);
    }

    #[test]
    fn start_after_previous_statement_takes_in_the_comments_before_a_statement() {
        let at = |q: &str, token: &str| start_after_previous_statement(q.as_bytes(), q.find(token).unwrap());
        // PostgreSQL 18's start of each statement is its first token.
        let q = "-- allow x\n/* y */ CREATE INDEX i ON t (a)";
        assert_eq!(at(q, "CREATE"), 0);
        let q = "SELECT 1; -- allow x\nCREATE INDEX i ON t (a)";
        assert_eq!(at(q, "CREATE"), 9);
        let q = "SELECT 1;CREATE INDEX i ON t (a)";
        assert_eq!(at(q, "CREATE"), 9);
        // A semicolon inside the comments is not taken for the separator when what follows
        // it does not read as comments.
        let q = "SELECT 1; /* a; b */ CREATE INDEX i ON t (a)";
        assert_eq!(at(q, "CREATE"), 9);
        let q = "/* a; /* nested; */ b */ -- c; d\nCREATE INDEX i ON t (a)";
        assert_eq!(at(q, "CREATE"), 0);
        // A semicolon inside a literal of the previous statement is never reached: the
        // real separator comes first.
        let q = "SELECT $$;-- not a comment$$;\nCREATE INDEX i ON t (a)";
        assert_eq!(at(q, "CREATE"), q.find(";\n").unwrap() + 1);
        // Tokens before the statement and no semicolon: its own start (not expected from
        // PostgreSQL, which always separates statements by one).
        let q = "SELECT 1 CREATE";
        assert_eq!(at(q, "CREATE"), q.find("CREATE").unwrap());
        // An unterminated comment before the location is not a gap of comments.
        let q = "SELECT 1; /* x CREATE";
        assert_eq!(at(q, "CREATE"), q.find("CREATE").unwrap());
        assert_eq!(start_after_previous_statement(b"abc", 10), 3);
    }

    #[test]
    fn clean_query_bounds_isolates_one_statement() {
        let q = b"BEGIN; CREATE INDEX i ON t (a);\n  SELECT 1;";
        let (s, e) = clean_query_bounds(q, 6, 24);
        assert_eq!(&q[s..e], b"CREATE INDEX i ON t (a)");
        let (s, e) = clean_query_bounds(q, 31, 0);
        assert_eq!(&q[s..e], b"SELECT 1;");
        let (s, e) = clean_query_bounds(b"  DROP INDEX i ", -1, 7);
        assert_eq!((s, e), (2, 14));
        assert_eq!(clean_query_bounds(b"abc", 10, 2), (0, 3));
    }

    #[test]
    fn concurrently_is_inserted_after_index() {
        assert_eq!(
            add_concurrently("CREATE INDEX orders_c_idx ON orders (c);").unwrap(),
            "CREATE INDEX CONCURRENTLY orders_c_idx ON orders (c)"
        );
        assert_eq!(
            add_concurrently("create unique index on t using btree (lower(email)) where x > 0").unwrap(),
            "create unique index CONCURRENTLY on t using btree (lower(email)) where x > 0"
        );
        assert_eq!(
            add_concurrently("/* django */ -- x\n  CREATE\n INDEX \"My Idx\" ON \"T\" (a)").unwrap(),
            "CREATE\n INDEX CONCURRENTLY \"My Idx\" ON \"T\" (a)"
        );
    }

    #[test]
    fn concurrently_text_that_is_not_create_index_is_refused() {
        assert_eq!(add_concurrently("CREATE TABLE t (a int)"), None);
        assert_eq!(add_concurrently("CREATE INDEXES"), None);
        assert_eq!(add_concurrently(""), None);
    }

    #[test]
    fn reindex_gets_concurrently_after_the_object_kind() {
        assert_eq!(add_reindex_concurrently("REINDEX TABLE orders;").unwrap(), "REINDEX TABLE CONCURRENTLY orders");
        assert_eq!(
            add_reindex_concurrently("reindex (verbose, tablespace 'x') index public.i").unwrap(),
            "reindex (verbose, tablespace 'x') index CONCURRENTLY public.i"
        );
        assert_eq!(add_reindex_concurrently("REINDEX SYSTEM"), None);
        assert_eq!(add_reindex_concurrently("VACUUM FULL"), None);
    }

    #[test]
    fn constraint_clause_finds_named_and_unnamed_definitions() {
        let s = "ALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (a, b) REFERENCES c (x, y) ON DELETE CASCADE, ADD CHECK (a > ',')";
        let start = s.find("CONSTRAINT").unwrap();
        let (name, def) = constraint_clause(s, start).unwrap();
        assert_eq!(name.as_deref(), Some("fk"));
        assert_eq!(def, "FOREIGN KEY (a, b) REFERENCES c (x, y) ON DELETE CASCADE");
        let start = s.find("CHECK").unwrap();
        let (name, def) = constraint_clause(s, start).unwrap();
        assert_eq!(name, None);
        assert_eq!(def, "CHECK (a > ',')");
    }

    #[test]
    fn constraint_clause_handles_quotes_comments_and_dollar_strings() {
        let s = "alter table t add constraint \"Weird, Name\" check (a <> $x$;,$x$ /* , */ and b <> 'it''s') ; ";
        let (name, def) = constraint_clause(s, s.find("constraint").unwrap()).unwrap();
        assert_eq!(name.as_deref(), Some("\"Weird, Name\""));
        assert_eq!(def, "check (a <> $x$;,$x$ /* , */ and b <> 'it''s')");
    }

    #[test]
    fn constraint_clause_rejects_bad_offsets() {
        assert_eq!(constraint_clause("abc", 10), None);
        assert_eq!(constraint_clause("ALTER TABLE t ADD CONSTRAINT", 18), None);
    }
}
