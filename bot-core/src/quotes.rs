//! Quotes: an operation priced above the confirmation threshold waits here, as the job it would
//! enqueue, until the person confirms or dismisses it, once.

/// A quote's id, carried by its Confirm and Cancel buttons.
pub type QuoteId = i64;
