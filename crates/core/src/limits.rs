//! Lambda's quotas, as Nimbus enforces them.

/// Smallest memory size, MB.
pub const MEMORY_MIN_MB: u32 = 128;
/// Largest memory size, MB.
pub const MEMORY_MAX_MB: u32 = 10_240;
/// Memory size when none is given, MB.
pub const MEMORY_DEFAULT_MB: u32 = 128;
/// Shortest timeout, seconds.
pub const TIMEOUT_MIN_S: u32 = 1;
/// Longest timeout, seconds.
pub const TIMEOUT_MAX_S: u32 = 900;
/// Timeout when none is given, seconds.
pub const TIMEOUT_DEFAULT_S: u32 = 3;
/// Largest environment, as the JSON of its variables, bytes.
pub const ENVIRONMENT_MAX_BYTES: usize = 4096;
/// Largest zip accepted in a direct upload, bytes.
pub const CODE_ZIPPED_MAX_BYTES: u64 = 52_428_800;
/// Largest unpacked code package, bytes.
pub const CODE_UNZIPPED_MAX_BYTES: u64 = 262_144_000;
/// Total code storage of the account, bytes.
pub const TOTAL_CODE_SIZE_BYTES: u64 = 80_530_636_800;
/// Concurrent executions of the account.
pub const CONCURRENT_EXECUTIONS: u32 = 1000;
/// Largest synchronous request or response payload, bytes (6 MiB).
pub const SYNC_PAYLOAD_MAX_BYTES: usize = 6_291_456;
/// Largest async (Event) payload, bytes (1 MiB, as Lambda allows since October 2025).
pub const ASYNC_PAYLOAD_MAX_BYTES: usize = 1_048_576;
/// Largest response a runtime may post, bytes (6 MiB + 100, as Lambda's runtime API allows).
pub const RUNTIME_RESPONSE_MAX_BYTES: usize = 6_291_556;
/// Longest description, characters.
pub const DESCRIPTION_MAX_CHARS: usize = 256;
/// Longest handler, characters.
pub const HANDLER_MAX_CHARS: usize = 128;
/// Most entries a code package may hold.
pub const CODE_MAX_ENTRIES: usize = 100_000;
/// Largest compression ratio of one zip entry before it counts as a zip bomb.
pub const CODE_MAX_COMPRESSION_RATIO: u64 = 500;
/// Most functions a list page returns.
pub const LIST_PAGE_MAX: usize = 50;
