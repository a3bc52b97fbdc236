//! `rampart dlq …`: the dead-letter commands.

use std::{process::ExitCode, sync::Arc};

use rampart_cli::StoreUrl;
use rampart_dead_letter::{DeadLetter, DeadLetterStore, Filter, Query};

use crate::{cli::Dlq, error::CliError};

mod purge;
mod records;
mod redrive;
mod stats;

/// Opens the store at `url` (an SQLite file must exist) and runs `cmd` on it.
pub(crate) async fn run(url: &str, cmd: Dlq) -> Result<ExitCode, CliError> {
    let store = url.parse::<StoreUrl>()?.open_existing().await?;
    match cmd {
        Dlq::List(args) => records::list(&store, args).await,
        Dlq::Show(args) => records::show(&store, args).await,
        Dlq::Stats(args) => stats::stats(&store, args).await,
        Dlq::Redrive(args) => redrive::redrive(store, args).await,
        Dlq::Purge(args) => purge::purge(&store, args).await,
    }
}

/// Calls `f` with every record matching `filter`, a page at a time, oldest first.
async fn for_each_matching(
    store: &Arc<dyn DeadLetterStore>,
    filter: Filter,
    mut f: impl FnMut(&DeadLetter),
) -> Result<(), CliError> {
    let mut query = Query::new(filter, 1000);
    loop {
        let page = store.list(&query).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        query.after = Some(last.id);
        page.iter().for_each(&mut f);
    }
}
