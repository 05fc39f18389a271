//! Name registries: the SSL methods and the CaSSLe feature distillers, as closed enums.
//!
//! Each kind parses from (and prints as, and serialises to) one lower-case name: `byol`, `simclr`,
//! `mocov2plus`, `vicreg`, `barlow`, `simsiam`; `predictive`, `contrastive`, `predictive_mse`,
//! `decorrelative`. An unknown name is a [`CoreError::UnknownName`] that lists the valid names.
//! Adding a variant fails to compile until every `match` handles it.

use crate::error::CoreError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The self-supervised method that trains the feature extractor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MethodKind {
    /// BYOL: predictor + momentum target, loss [`crate::loss::byol`].
    #[serde(rename = "byol")]
    Byol,
    /// SimCLR: NT-Xent over both views, loss [`crate::loss::nt_xent`].
    #[serde(rename = "simclr")]
    SimClr,
    /// MoCo v2+: momentum key encoder and a queue of negatives, loss [`crate::loss::info_nce_queue`].
    #[serde(rename = "mocov2plus")]
    MocoV2Plus,
    /// VICReg: invariance / variance / covariance, loss [`crate::loss::vicreg`].
    #[serde(rename = "vicreg")]
    VicReg,
    /// Barlow Twins: cross-correlation to identity, loss [`crate::loss::barlow_twins`].
    #[serde(rename = "barlow")]
    Barlow,
    /// SimSiam: predictor + stop-gradient, loss [`crate::loss::simsiam`].
    #[serde(rename = "simsiam")]
    SimSiam,
}

impl MethodKind {
    /// Every method, in the order help texts list them.
    pub const ALL: [MethodKind; 6] = [
        MethodKind::Byol,
        MethodKind::SimClr,
        MethodKind::MocoV2Plus,
        MethodKind::VicReg,
        MethodKind::Barlow,
        MethodKind::SimSiam,
    ];

    /// The method's name (config value, CLI value, serde string).
    pub const fn name(self) -> &'static str {
        match self {
            MethodKind::Byol => "byol",
            MethodKind::SimClr => "simclr",
            MethodKind::MocoV2Plus => "mocov2plus",
            MethodKind::VicReg => "vicreg",
            MethodKind::Barlow => "barlow",
            MethodKind::SimSiam => "simsiam",
        }
    }

    /// The feature distiller CaSSLe / Kaizen pair with this method: BYOL -> predictive,
    /// SimCLR -> contrastive, MoCoV2+ -> contrastive, VICReg -> predictive_mse,
    /// Barlow -> decorrelative, SimSiam -> predictive.
    pub const fn default_distiller(self) -> DistillerKind {
        match self {
            MethodKind::Byol | MethodKind::SimSiam => DistillerKind::Predictive,
            MethodKind::SimClr | MethodKind::MocoV2Plus => DistillerKind::Contrastive,
            MethodKind::VicReg => DistillerKind::PredictiveMse,
            MethodKind::Barlow => DistillerKind::Decorrelative,
        }
    }
}

/// The CaSSLe feature distiller: how the distillation predictor's output h(z_v) is pulled towards the
/// frozen previous model's projection of the same view (see [`crate::distill`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DistillerKind {
    /// BYOL loss (2 - 2 cos) per view, averaged over the views.
    #[serde(rename = "predictive")]
    Predictive,
    /// InfoNCE of h(z) against the frozen projections of both views ([`crate::loss::contrastive_distill`]).
    #[serde(rename = "contrastive")]
    Contrastive,
    /// Mean squared error per view, averaged over the views.
    #[serde(rename = "predictive_mse")]
    PredictiveMse,
    /// Barlow Twins loss per view, averaged over the views.
    #[serde(rename = "decorrelative")]
    Decorrelative,
}

impl DistillerKind {
    /// Every distiller, in the order help texts list them.
    pub const ALL: [DistillerKind; 4] = [
        DistillerKind::Predictive,
        DistillerKind::Contrastive,
        DistillerKind::PredictiveMse,
        DistillerKind::Decorrelative,
    ];

    /// The distiller's name (config value, CLI value, serde string).
    pub const fn name(self) -> &'static str {
        match self {
            DistillerKind::Predictive => "predictive",
            DistillerKind::Contrastive => "contrastive",
            DistillerKind::PredictiveMse => "predictive_mse",
            DistillerKind::Decorrelative => "decorrelative",
        }
    }

    /// The default weight lambda_FE of the feature-distillation term L_FE^KD (official CaSSLe / Kaizen
    /// defaults, `kaizen-spec.md`): 25 for `predictive_mse` (its MSE is small next to the VICReg SSL
    /// loss it accompanies), 1 for every other distiller.
    pub const fn default_weight(self) -> f64 {
        match self {
            DistillerKind::PredictiveMse => 25.0,
            DistillerKind::Predictive
            | DistillerKind::Contrastive
            | DistillerKind::Decorrelative => 1.0,
        }
    }
}

fn valid_names<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str) -> String {
    all.iter().map(|&k| name(k)).collect::<Vec<_>>().join(", ")
}

impl fmt::Display for MethodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for DistillerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MethodKind {
    type Err = CoreError;

    /// Exact, case-sensitive match on [`MethodKind::name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MethodKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| CoreError::UnknownName {
                what: "method",
                name: s.to_string(),
                valid: valid_names(&MethodKind::ALL, MethodKind::name),
            })
    }
}

impl FromStr for DistillerKind {
    type Err = CoreError;

    /// Exact, case-sensitive match on [`DistillerKind::name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DistillerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| CoreError::UnknownName {
                what: "distiller",
                name: s.to_string(),
                valid: valid_names(&DistillerKind::ALL, DistillerKind::name),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_fromstr_display_and_serde() {
        for k in MethodKind::ALL {
            assert_eq!(k.to_string().parse::<MethodKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<MethodKind>(&json).unwrap(), k);
        }
        for k in DistillerKind::ALL {
            assert_eq!(k.to_string().parse::<DistillerKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.name()));
            assert_eq!(serde_json::from_str::<DistillerKind>(&json).unwrap(), k);
        }
        let names: Vec<_> = MethodKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "byol",
                "simclr",
                "mocov2plus",
                "vicreg",
                "barlow",
                "simsiam"
            ]
        );
        let names: Vec<_> = DistillerKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "predictive",
                "contrastive",
                "predictive_mse",
                "decorrelative"
            ]
        );
    }

    #[test]
    fn unknown_names_list_the_valid_ones() {
        let err = "moco".parse::<MethodKind>().unwrap_err();
        assert!(
            matches!(&err, CoreError::UnknownName { what: "method", name, .. } if name == "moco")
        );
        let msg = err.to_string();
        for k in MethodKind::ALL {
            assert!(msg.contains(k.name()), "{msg}");
        }
        let err = "Predictive".parse::<DistillerKind>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown distiller `Predictive`"), "{msg}");
        for k in DistillerKind::ALL {
            assert!(msg.contains(k.name()), "{msg}");
        }
        assert!(serde_json::from_str::<MethodKind>("\"sim_clr\"").is_err());
    }

    #[test]
    fn default_distillers_and_weights_follow_the_spec() {
        use DistillerKind as D;
        use MethodKind as M;
        let pairs = [
            (M::Byol, D::Predictive),
            (M::SimClr, D::Contrastive),
            (M::MocoV2Plus, D::Contrastive),
            (M::VicReg, D::PredictiveMse),
            (M::Barlow, D::Decorrelative),
            (M::SimSiam, D::Predictive),
        ];
        for (m, d) in pairs {
            assert_eq!(m.default_distiller(), d, "{m}");
        }
        assert_eq!(D::PredictiveMse.default_weight(), 25.0);
        for d in [D::Predictive, D::Contrastive, D::Decorrelative] {
            assert_eq!(d.default_weight(), 1.0);
        }
    }
}
