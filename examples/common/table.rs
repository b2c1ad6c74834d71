//! The "published vs this" table the examples print: one row per quantity,
//! the published value, the value computed here, and a note.

pub struct Row {
    pub quantity: String,
    pub published: String,
    pub computed: String,
    pub note: String,
}

pub fn print_table(title: &str, rows: &[Row]) {
    println!("{title}\n");
    let w = |f: &dyn Fn(&Row) -> &str, h: &str| {
        rows.iter()
            .map(|r| f(r).chars().count())
            .max()
            .unwrap_or(0)
            .max(h.len())
    };
    let (wq, wp, wc) = (
        w(&|r| &r.quantity, "quantity"),
        w(&|r| &r.published, "published"),
        w(&|r| &r.computed, "computed"),
    );
    println!(
        "| {:wq$} | {:>wp$} | {:>wc$} | note",
        "quantity", "published", "computed"
    );
    println!(
        "|{}|{}|{}|------",
        "-".repeat(wq + 2),
        "-".repeat(wp + 2),
        "-".repeat(wc + 2)
    );
    for r in rows {
        println!(
            "| {:wq$} | {:>wp$} | {:>wc$} | {}",
            r.quantity, r.published, r.computed, r.note
        );
    }
    println!();
}

pub fn row(quantity: impl Into<String>, published: &str, computed: String, note: &str) -> Row {
    Row {
        quantity: quantity.into(),
        published: published.into(),
        computed,
        note: note.into(),
    }
}
