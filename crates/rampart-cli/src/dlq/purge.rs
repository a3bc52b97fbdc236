//! `rampart dlq purge`.

use std::{process::ExitCode, sync::Arc, time::SystemTime};

use rampart_dead_letter::DeadLetterStore;

use crate::{cli::PurgeArgs, error::CliError, output::out};

pub(super) async fn purge(
    store: &Arc<dyn DeadLetterStore>,
    args: PurgeArgs,
) -> Result<ExitCode, CliError> {
    let filter = args.filter.to_filter(SystemTime::now());
    let what = args.filter.describe();
    if !args.yes {
        let mut matching = 0u64;
        super::for_each_matching(store, filter, |_| matching += 1).await?;
        return Err(CliError::usage(format!(
            "refusing to purge without --yes: {} ({what}) in {} would be removed for good; \
             nothing was removed",
            records(matching),
            store.describe()
        )));
    }
    let removed = store.purge(&filter).await?;
    out(&format!(
        "removed {} ({what}) from {}\n",
        records(removed),
        store.describe()
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn records(n: u64) -> String {
    if n == 1 {
        "1 record".into()
    } else {
        format!("{n} records")
    }
}
