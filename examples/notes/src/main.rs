//! `notes-server`: the notes example app served by the tickethub server (same CLI as
//! `tickethub serve`). See `lib.rs` for what the app shows and how to call it.

fn main() -> anyhow::Result<()> {
    tickethub_server::main_with(notes_example::app(), notes_example::SCHEMA)
}
