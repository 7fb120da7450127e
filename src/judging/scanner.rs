//! The comments of a statement's text, found by PostgreSQL's own lexer: every comment this
//! module returns is one the server's parser skipped as a comment, so annotation-like text
//! inside a string literal, a quoted identifier or a dollar-quoted body is never read as
//! an annotation (`crate::overrides` parses the bodies this module returns).
//!
//! How: the core scanner (src/backend/parser/scan.l, entry points in
//! src/include/parser/scanner.h: `scanner_init`, `core_yylex`, `scanner_finish`) returns
//! every token of the text with its start offset, and skips whitespace and comments without
//! returning them. A token's end is found the way pg_stat_statements'
//! `fill_in_constant_lengths` finds a constant's (contrib/pg_stat_statements/
//! pg_stat_statements.c): flex places a NUL after the current token's text in `scanbuf`,
//! so the token ends at `yylloc + strlen(scanbuf + yylloc)`. The gaps between consecutive
//! tokens, before the first and after the last one then hold only whitespace and comments,
//! and `comment_bodies_in_gap` splits them (`--` to the end of the line, `/* */` nested,
//! as scan.l's `comment` and `xc` rules do).
//!
//! Which lexer settings: `scanner_init` copies the session's current
//! `standard_conforming_strings`, `backslash_quote` and `escape_string_warning`, as
//! `raw_parser` does. The current values are not always the ones the statement was parsed
//! with: a simple-query string is parsed whole before its first statement runs
//! (exec_simple_query in src/backend/tcop/postgres.c), so in
//! `SET standard_conforming_strings = on; CREATE INDEX ...` the CREATE INDEX was lexed
//! with the old value; a prepared statement or a PL/pgSQL statement runs with whatever is
//! set when it runs. Of the three, only `standard_conforming_strings` changes where tokens
//! end (whether `'...'` treats a backslash as an escape, scan.l `xqstart`);
//! `backslash_quote` only makes `\'` an ERROR and `escape_string_warning` only adds a
//! WARNING. So when the text has a backslash (the only way the two values can lex it
//! differently, apart from `U&'...'`, which is an ERROR when the setting is off), or when
//! the current value fails to lex it, the text is scanned with both values, and a comment
//! counts only if it is a comment under every value that lexes the text without an ERROR.
//! The value the parser used is among those, so a text that is a comment to this module
//! was a comment to the parser. The price: in a text whose plain `'...'` literal contains
//! `\'` and that lexes under both values, an annotation is only found when it is a comment
//! either way. `backslash_quote` is set to `on` for the scan (so that it cannot fail where
//! the parser did not) and `escape_string_warning` off (pg_stat_statements does the same,
//! so as not to repeat the parser's WARNINGs); the scanner's NOTICEs (an identifier
//! truncated to NAMEDATALEN - 1 bytes) are not sent again either.
//!
//! Not a gap, so not a comment here: a `--` comment between the parts of a string literal
//! continued on the next line (`'a' -- note` newline `'b'`), which scan.l's `quotecontinue`
//! makes part of the literal's token.

use std::ffi::{c_int, CStr, CString};
use std::ops::Range;

use pgrx::pg_sys;
use pgrx::PgSqlErrorCode;

/// The bodies of the comments of `text` (one statement's text, as `CleanQuerytext`
/// isolates it, or any SQL text), in order: for `-- x` the text after `--` up to the line
/// end, for `/* x */` the text between the outermost `/*` and `*/` (nested comments
/// included). `Err` carries the lexer's message when no candidate value of
/// `standard_conforming_strings` lexes the text (see the module documentation); the
/// statement was parsed already, so this is not expected.
///
/// # Safety
/// Inside a transaction (each scan runs in an internal subtransaction that catches the
/// lexer's ERROR).
pub unsafe fn comments(text: &[u8]) -> Result<Vec<String>, String> {
    unsafe {
        let ranges = comment_ranges(text)?;
        Ok(ranges.into_iter().map(|r| String::from_utf8_lossy(&text[r]).into_owned()).collect())
    }
}

/// `comments`, as byte ranges of `text`.
unsafe fn comment_ranges(text: &[u8]) -> Result<Vec<Range<usize>>, String> {
    unsafe {
        let current = pg_sys::standard_conforming_strings;
        let first = scan(text, current);
        if first.is_ok() && !text.contains(&b'\\') {
            return first;
        }
        match (first, scan(text, !current)) {
            (Ok(a), Ok(b)) => Ok(a.into_iter().filter(|c| b.contains(c)).collect()),
            (Ok(a), Err(_)) | (Err(_), Ok(a)) => Ok(a),
            (Err(e), Err(_)) => Err(e),
        }
    }
}

/// The comment bodies of `text` lexed with `standard_conforming_strings` as given, in an
/// internal subtransaction: a lexer ERROR comes back as its message (a query cancel is
/// raised again, as `hook::in_subtransaction` does).
unsafe fn scan(text: &[u8], standard_conforming_strings: bool) -> Result<Vec<Range<usize>>, String> {
    let Ok(sql) = CString::new(text) else {
        return Err("the statement text contains a zero byte".to_string());
    };
    let gaps = unsafe { crate::subxact::run(crate::subxact::OnSuccess::RollBack, || token_gaps(&sql, standard_conforming_strings)) };
    match gaps {
        Ok(gaps) => {
            let mut out = Vec::new();
            for gap in gaps {
                comment_bodies_in_gap(text, gap, &mut out);
            }
            Ok(out)
        }
        Err(e) => {
            let report = crate::subxact::report(&e);
            if report.sql_error_code() == PgSqlErrorCode::ERRCODE_QUERY_CANCELED {
                e.rethrow();
            }
            Err(report.message().to_string())
        }
    }
}

/// Runs the core scanner over `sql` and returns the byte ranges between its tokens: before
/// the first, between each two, after the last (empty ranges left out). A lexer ERROR is
/// raised (as a Rust panic through pgrx's FFI guard).
fn token_gaps(sql: &CStr, standard_conforming_strings: bool) -> Vec<Range<usize>> {
    let len = sql.count_bytes();
    let mut gaps = Vec::new();
    unsafe {
        let _quiet = QuietNotices::new();
        let mut extra_storage = pg_sys::core_yy_extra_type::default();
        // The scanner keeps this pointer (core_yyset_extra) and writes through it: every
        // access below goes through the same raw pointer.
        let extra: *mut pg_sys::core_yy_extra_type = &mut extra_storage;
        let scanner = pg_sys::scanner_init(
            sql.as_ptr(),
            extra,
            &raw const pg_sys::ScanKeywords,
            (&raw const pg_sys::ScanKeywordTokens).cast::<u16>(),
        );
        // scanner.h: "Callers can modify them after scanner_init() if they don't want the
        // scanner's behavior to follow the prevailing GUC settings."
        (*extra).standard_conforming_strings = standard_conforming_strings;
        (*extra).backslash_quote = pg_sys::BackslashQuoteType::BACKSLASH_QUOTE_ON as c_int;
        (*extra).escape_string_warning = false;
        let mut value = pg_sys::core_YYSTYPE::default();
        let mut location: c_int = 0;
        let mut previous_end = 0usize;
        loop {
            let token = pg_sys::core_yylex(&mut value, &mut location, scanner);
            if token == 0 {
                break; // end of text
            }
            let start = usize::try_from(location).unwrap_or(previous_end).clamp(previous_end, len);
            // flex put a NUL right after the token's text (see the module documentation).
            let end = (start + CStr::from_ptr((*extra).scanbuf.add(start)).count_bytes()).min(len);
            if start > previous_end {
                gaps.push(previous_end..start);
            }
            previous_end = previous_end.max(end);
        }
        if len > previous_end {
            gaps.push(previous_end..len);
        }
        pg_sys::scanner_finish(scanner);
    }
    gaps
}

/// Appends the bodies of the comments in `text[gap]`, a stretch the lexer skipped, which
/// holds only whitespace (scan.l `space`) and comments. scan.l: `comment` is `--` and
/// everything up to a newline (`\n` or `\r`) or the end of the text; `xcstart` (`/*`)
/// opens a comment and, inside one, a nested one; `xcstop` (`*/`) closes the innermost.
/// Pure Rust.
fn comment_bodies_in_gap(text: &[u8], gap: Range<usize>, out: &mut Vec<Range<usize>>) {
    let end = gap.end.min(text.len());
    let mut i = gap.start;
    while i < end {
        let rest = &text[i..end];
        if rest.starts_with(b"--") {
            let body = i + 2;
            let stop = text[body..end].iter().position(|&b| b == b'\n' || b == b'\r').map_or(end, |p| body + p);
            out.push(body..stop);
            i = stop;
        } else if rest.starts_with(b"/*") {
            let body = i + 2;
            let mut depth = 1;
            let mut j = body;
            while j < end && depth > 0 {
                if text[j..end].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if text[j..end].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                } else {
                    j += 1;
                }
            }
            // The lexer found the comment closed (or the statement would not have parsed);
            // an unclosed one runs to the end of the gap.
            out.push(body..if depth == 0 { j - 2 } else { end });
            i = j;
        } else {
            i += 1; // whitespace
        }
    }
}

/// While alive, messages below ERROR are neither sent to the client nor logged
/// (`client_min_messages` and `log_min_messages` raised to ERROR; errstart in
/// src/backend/utils/error/elog.c then drops them): the scanner's NOTICE about a truncated
/// identifier was reported once already, when the statement was parsed. The previous
/// values come back on drop, also when the scanner's ERROR unwinds through it.
struct QuietNotices {
    client: c_int,
    log: c_int,
}

impl QuietNotices {
    unsafe fn new() -> Self {
        unsafe {
            let saved = QuietNotices { client: pg_sys::client_min_messages, log: pg_sys::log_min_messages };
            pg_sys::client_min_messages = pg_sys::PGERROR as c_int;
            pg_sys::log_min_messages = pg_sys::PGERROR as c_int;
            saved
        }
    }
}

impl Drop for QuietNotices {
    fn drop(&mut self) {
        unsafe {
            pg_sys::client_min_messages = self.client;
            pg_sys::log_min_messages = self.log;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::comment_bodies_in_gap;

    fn bodies(gap: &str) -> Vec<&str> {
        let mut out = Vec::new();
        comment_bodies_in_gap(gap.as_bytes(), 0..gap.len(), &mut out);
        out.into_iter().map(|r| &gap[r]).collect()
    }

    #[test]
    fn line_comments_end_at_a_newline_or_carriage_return_or_the_gap() {
        assert_eq!(bodies(" -- a\n\t-- b\r-- c"), vec![" a", " b", " c"]);
        assert_eq!(bodies("--"), vec![""]);
    }

    #[test]
    fn block_comments_nest_and_may_hold_line_comment_markers() {
        assert_eq!(bodies("/* a /* b */ c */ /* -- d */"), vec![" a /* b */ c ", " -- d "]);
        assert_eq!(bodies("/**/ /***/ /* x **/"), vec!["", "*", " x *"]);
    }

    #[test]
    fn a_line_comment_may_hold_block_comment_markers() {
        assert_eq!(bodies("-- /* not nested\n/* real */"), vec![" /* not nested", " real "]);
    }

    #[test]
    fn whitespace_alone_has_no_comment() {
        assert!(bodies(" \t\r\n\x0c ").is_empty());
    }
}
