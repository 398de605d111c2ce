#pragma once
// Cancel wake-ups for the SQLite catalog. A SQLite catalog is shared only by the processes of
// one host, so a cancel can wake that host's workers directly: the canceller, once its
// transaction has committed, creates and at once removes a file named after the job in the
// directory `<database file>-cancels`, and each worker's listener watches that directory with
// inotify. A hint only, as PostgreSQL's NOTIFY is: the row is the truth and heartbeats still
// read it (the fallback when the directory is on a filesystem where inotify sees nothing, such
// as NFS written from another host).

#include <filesystem>
#include <memory>
#include <string_view>

#include "btstore/catalog.h"

namespace btstore::internal {

/// Return the wake-up directory of the SQLite database file `database`.
std::filesystem::path CancelWakeupDir(const std::filesystem::path& database);

/// Wake the listeners of `dir` for `job_id`. Best effort: a failure only delays the cancel to
/// the next heartbeat, so it is ignored.
void SendCancelWakeup(const std::filesystem::path& dir, std::string_view job_id) noexcept;

/// Start watching `dir` (created when missing). Wait() returns the job_id of each wake-up, and
/// "" when events were lost (the caller re-reads its rows). Throws CatalogUnavailable when the
/// directory cannot be created or watched, and from Wait() once it was removed (the caller
/// watches it again).
std::unique_ptr<CancelListener> WatchCancelWakeups(const std::filesystem::path& dir);

}  // namespace btstore::internal
