//! Text shared by the hints of several rules.

/// The end of the hint of every breaking-change rule (`renaming-column`, `renaming-table`,
/// `ban-drop-column`, `ban-drop-table`): the statement is quick, the danger is code that
/// still runs against the old schema.
pub const EXPAND_CONTRACT: &str =
    "Expand and contract: deploy code that no longer uses it first, then run this statement in a later migration.";
