//! The catalog of published weights (`worker/weights.toml`): named bundles, each an ordered list of steps that
//! download, unpack and convert files inside one output folder.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use s2v_models::NetworkKind;
use serde::Deserialize;

/// The catalog built into `s2v`.
const BUILT_IN: &str = include_str!("../../weights.toml");

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read the catalog {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the catalog is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("the catalog names the bundle {0:?} twice")]
    Duplicate(String),
    #[error("no bundle is named {name:?}; the catalog has {known}")]
    Unknown { name: String, known: String },
    #[error("the bundle {0:?} needs itself, through its `needs`")]
    Cycle(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "bundle")]
    pub bundles: Vec<Bundle>,
}

/// One set of weights as its authors published it, and what `s2v` makes of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub name: String,
    pub about: String,
    /// Where the authors point to the files.
    pub published: String,
    /// Bundles whose files this one's steps read; fetched first, into the same folder.
    #[serde(default)]
    pub needs: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// Downloads `url` to `file`, checked against `sha256` where the catalog pins it.
    Download {
        url: String,
        file: RelativePath,
        #[serde(default)]
        sha256: Option<Sha256>,
    },
    /// Takes the files named `members` (by file name, wherever they sit) out of a `.tar.gz`.
    Unpack {
        archive: RelativePath,
        members: Vec<FileName>,
    },
    /// `s2v convert`: a PyTorch checkpoint to the project's own format.
    Convert {
        from: RelativePath,
        network: NetworkKind,
        to: RelativePath,
    },
    /// `s2v convert-unclip`: a diffusers folder and a Sound2Vision audio encoder to a served model folder.
    ConvertUnclip {
        diffusers: RelativePath,
        audio_encoder: RelativePath,
        to: RelativePath,
    },
}

/// A path inside the output folder: relative, without `..`, so a catalog cannot write elsewhere.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RelativePath(PathBuf);

impl TryFrom<String> for RelativePath {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let path = PathBuf::from(&text);
        let inside = !text.is_empty()
            && path
                .components()
                .all(|part| matches!(part, Component::Normal(_)));
        if inside {
            Ok(Self(path))
        } else {
            Err(format!(
                "{text:?} is not a relative path inside the output folder"
            ))
        }
    }
}

impl RelativePath {
    pub fn under(&self, dir: &Path) -> PathBuf {
        dir.join(&self.0)
    }
}

impl std::fmt::Display for RelativePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}

/// A bare file name (no folder), as an archive member is looked up by.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FileName(String);

impl TryFrom<String> for FileName {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let bare = Path::new(&text).file_name().and_then(|n| n.to_str()) == Some(text.as_str());
        if bare {
            Ok(Self(text))
        } else {
            Err(format!("{text:?} is not a bare file name"))
        }
    }
}

impl FileName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A SHA-256 digest, written as 64 hexadecimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Sha256(pub [u8; 32]);

impl TryFrom<String> for Sha256 {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&text, &mut digest)
            .map_err(|_| format!("{text:?} is not a SHA-256 (64 hexadecimal digits)"))?;
        Ok(Self(digest))
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Catalog {
    /// The catalog built into `s2v`.
    pub fn built_in() -> Self {
        Self::parse(BUILT_IN).expect("the built-in catalog is tested to parse")
    }

    pub fn read(path: &Path) -> Result<Self, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        let catalog: Self = toml::from_str(text)?;
        let mut names = HashSet::new();
        for bundle in &catalog.bundles {
            if !names.insert(bundle.name.as_str()) {
                return Err(CatalogError::Duplicate(bundle.name.clone()));
            }
        }
        for bundle in &catalog.bundles {
            catalog.plan(&bundle.name)?;
        }
        Ok(catalog)
    }

    pub fn bundle(&self, name: &str) -> Result<&Bundle, CatalogError> {
        self.bundles
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| CatalogError::Unknown {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    pub fn names(&self) -> Vec<&str> {
        self.bundles.iter().map(|b| b.name.as_str()).collect()
    }

    /// `name` and the bundles it needs, each once, needed ones first.
    pub fn plan(&self, name: &str) -> Result<Vec<&Bundle>, CatalogError> {
        let mut order = Vec::new();
        self.visit(name, &mut Vec::new(), &mut order)?;
        Ok(order)
    }

    fn visit<'a>(
        &'a self,
        name: &str,
        path: &mut Vec<String>,
        order: &mut Vec<&'a Bundle>,
    ) -> Result<(), CatalogError> {
        if path.iter().any(|n| n == name) {
            return Err(CatalogError::Cycle(name.to_string()));
        }
        let bundle = self.bundle(name)?;
        if order.iter().any(|b| b.name == name) {
            return Ok(());
        }
        path.push(name.to_string());
        for needed in &bundle.needs {
            self.visit(needed, path, order)?;
        }
        path.pop();
        order.push(bundle);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_catalog_parses_and_names_the_five_bundles() {
        let catalog = Catalog::parse(BUILT_IN).unwrap();
        assert_eq!(
            catalog.names(),
            ["sound2scene", "swav", "icgan", "sound2vision", "unclip"]
        );
        let plan: Vec<_> = catalog
            .plan("unclip")
            .unwrap()
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(plan, ["sound2vision", "unclip"]);
    }

    #[test]
    fn paths_outside_the_folder_bad_digests_and_loops_are_refused() {
        let with_step = |step: &str| {
            format!("[[bundle]]\nname = \"a\"\nabout = \"\"\npublished = \"\"\nsteps = [{step}]\n")
        };
        for file in ["../x", "/etc/passwd", "a/../../x", ""] {
            let text = with_step(&format!(
                "{{ action = \"download\", url = \"http://h/x\", file = \"{file}\" }}"
            ));
            let error = Catalog::parse(&text).unwrap_err().to_string();
            assert!(error.contains("not a relative path"), "{file}: {error}");
        }
        let text = with_step(
            "{ action = \"download\", url = \"http://h/x\", file = \"x\", sha256 = \"abc\" }",
        );
        assert!(
            Catalog::parse(&text)
                .unwrap_err()
                .to_string()
                .contains("not a SHA-256")
        );
        let text =
            with_step("{ action = \"unpack\", archive = \"a.tar.gz\", members = [\"d/x\"] }");
        assert!(
            Catalog::parse(&text)
                .unwrap_err()
                .to_string()
                .contains("not a bare file name")
        );

        let looped = "[[bundle]]\nname = \"a\"\nabout = \"\"\npublished = \"\"\nneeds = [\"b\"]\nsteps = []\n\
                      [[bundle]]\nname = \"b\"\nabout = \"\"\npublished = \"\"\nneeds = [\"a\"]\nsteps = []\n";
        assert!(matches!(
            Catalog::parse(looped),
            Err(CatalogError::Cycle(_))
        ));
        let missing = "[[bundle]]\nname = \"a\"\nabout = \"\"\npublished = \"\"\nneeds = [\"c\"]\nsteps = []\n";
        assert!(matches!(
            Catalog::parse(missing),
            Err(CatalogError::Unknown { .. })
        ));
    }
}
