//! The function model of Nimbus: what a function is, how its configuration is validated,
//! and the errors the platform reports. No I/O lives here.

pub mod arn;
pub mod error;
pub mod limits;
pub mod model;
pub mod placement;
pub mod schedule;
pub mod sigv4;
pub mod validate;

pub use error::{Error, ErrorKind};
pub use model::{
    AliasConfig, AsyncEvent, DeadLetter, EventInvokeConfig, FunctionConfig, FunctionSpec,
    ProvisionedConfig, Runtime, RuntimeFamily, Scaling, UrlConfig,
};
