//! The closed sets of values a setting can take, as enums that clap and serde both know
//! by the same lowercase names.

use serde::{Deserialize, Serialize};

/// The format of the server's own log (stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// The network instances get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceNetwork {
    /// The host's network, as Lambda functions reach the internet.
    #[default]
    Host,
    /// A network namespace of each instance's own with only loopback, where its Runtime API
    /// is (127.0.0.1:9001); needs root.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn clap_and_serde_spell_every_value_alike() {
        #[derive(Deserialize, Serialize)]
        struct Holder<T> {
            value: T,
        }
        fn check<
            T: ValueEnum + Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
        >() {
            for variant in T::value_variants() {
                let name = variant
                    .to_possible_value()
                    .expect("no skipped variants")
                    .get_name()
                    .to_owned();
                let text = toml::to_string(&Holder { value: variant }).expect("serialise");
                assert_eq!(text.trim(), format!("value = \"{name}\""));
                let back: Holder<T> = toml::from_str(&text).expect("parse");
                assert_eq!(&back.value, variant);
            }
        }
        check::<LogFormat>();
        check::<InstanceNetwork>();
    }
}
