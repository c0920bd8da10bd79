//! The image encoder `f_V`, frozen everywhere but in the trainer's first stage. Two architectures give it: the
//! paper's SwAV ResNet-50 (and the narrow ResNets the project trains), and EfficientNet-Lite, whose
//! registry-shipped ImageNet weights the default model conditions on. Both read ImageNet-normalised square
//! pictures and give one pooled feature row per picture.

mod efficientnet_lite;
mod resnet;

use burn::module::ModuleVisitor;
use burn::nn::Linear;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

#[cfg(feature = "torch")]
pub(crate) use efficientnet_lite::is_efficientnet_lite;
pub use efficientnet_lite::{EfficientNetLite, EfficientNetLiteConfig, MbConvConfig};
pub use resnet::{ResNetImageEncoder, ResNetImageEncoderConfig, SWAV_INPUT_SIZE};

use crate::checkpoint::CheckpointError;
#[cfg(feature = "torch")]
use crate::checkpoint::{FromTorch, TorchStateDict};
use crate::{NetworkKind, NetworkModule};

/// ImageNet's per-channel mean and standard deviation of unit pixel values, which every encoder's input is
/// normalised by.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Which architecture, with its sizes. Untagged, so that the configurations written before EfficientNet-Lite
/// (a ResNet's fields alone) still read; the two share no required field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ImageEncoderConfig {
    ResNet(ResNetImageEncoderConfig),
    EfficientNetLite(EfficientNetLiteConfig),
}

impl ImageEncoderConfig {
    /// The paper's: torchvision's ResNet-50, the backbone of SwAV's `swav_800ep_pretrain.pth.tar`.
    pub fn published() -> Self {
        Self::ResNet(ResNetImageEncoderConfig::published())
    }

    pub fn feature_dim(&self) -> usize {
        match self {
            Self::ResNet(config) => config.feature_dim(),
            Self::EfficientNetLite(config) => config.feature_dim(),
        }
    }
}

// One encoder is built per process and never moved in a loop: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum ImageEncoder<B: Backend> {
    ResNet(ResNetImageEncoder<B>),
    EfficientNetLite(EfficientNetLite<B>),
}

impl<B: Backend> ImageEncoder<B> {
    /// ImageNet-normalised images `[N, 3, S, S]` (`S` = [`ImageEncoder::input_size`]) to pooled features
    /// `[N, feature_dim]`.
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Self::ResNet(encoder) => encoder.forward(images),
            Self::EfficientNetLite(encoder) => encoder.forward(images),
        }
    }

    /// Side of the square pictures it reads.
    pub fn input_size(&self) -> usize {
        match self {
            Self::ResNet(encoder) => encoder.input_size,
            Self::EfficientNetLite(encoder) => encoder.input_size,
        }
    }

    /// Length of its feature rows.
    pub fn feature_dim(&self) -> usize {
        self.config().feature_dim()
    }

    /// Features before any trained projection: `[N, backbone_feature_dim]`.
    pub fn backbone_forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        match self {
            Self::ResNet(encoder) => encoder.forward(images),
            Self::EfficientNetLite(encoder) => encoder.pooled(images),
        }
    }

    /// Length of the feature rows before any projection.
    pub fn backbone_feature_dim(&self) -> usize {
        match self.config() {
            ImageEncoderConfig::EfficientNetLite(config) => config.head_width,
            config => config.feature_dim(),
        }
    }

    /// The trained projection of its features, where there is one.
    pub fn projection(&self) -> Option<&Linear<B>> {
        match self {
            Self::EfficientNetLite(encoder) => encoder.projection.as_ref(),
            Self::ResNet(_) => None,
        }
    }

    /// Visits every parameter but a projection's, in the order a visit of the whole network takes.
    pub fn visit_backbone<V: ModuleVisitor<B>>(&self, visitor: &mut V) {
        match self {
            Self::ResNet(encoder) => encoder.visit(visitor),
            Self::EfficientNetLite(encoder) => encoder.visit_backbone(visitor),
        }
    }

    /// The encoder without a trained projection of its features, and that projection where there is one.
    pub fn split_projection(self) -> (Self, Option<Linear<B>>) {
        match self {
            Self::EfficientNetLite(encoder) => {
                let (backbone, projection) = encoder.split_projection();
                (Self::EfficientNetLite(backbone), projection)
            }
            resnet => (resnet, None),
        }
    }

    /// This encoder with `projection` applied to its features. Only EfficientNet-Lite takes one.
    pub fn with_projection(self, projection: Linear<B>) -> Result<Self, CheckpointError> {
        match self {
            Self::EfficientNetLite(encoder) => Ok(Self::EfficientNetLite(EfficientNetLite {
                projection: Some(projection),
                ..encoder
            })),
            Self::ResNet(_) => Err(CheckpointError::InvalidConfig {
                network: NetworkKind::ImageEncoder.name(),
                message: "only an EfficientNet-Lite image encoder takes a projection".into(),
            }),
        }
    }
}

impl<B: Backend> NetworkModule<B> for ImageEncoder<B> {
    type Config = ImageEncoderConfig;
    const KIND: NetworkKind = NetworkKind::ImageEncoder;

    fn config(&self) -> ImageEncoderConfig {
        match self {
            Self::ResNet(encoder) => ImageEncoderConfig::ResNet(encoder.config()),
            Self::EfficientNetLite(encoder) => {
                ImageEncoderConfig::EfficientNetLite(encoder.config())
            }
        }
    }

    fn init(config: &ImageEncoderConfig, device: &B::Device) -> Result<Self, CheckpointError> {
        Ok(match config {
            ImageEncoderConfig::ResNet(config) => {
                Self::ResNet(ResNetImageEncoder::init(config, device)?)
            }
            ImageEncoderConfig::EfficientNetLite(config) => {
                Self::EfficientNetLite(EfficientNetLite::init(config, device)?)
            }
        })
    }
}

#[cfg(feature = "torch")]
impl<B: Backend> FromTorch<B> for ImageEncoder<B> {
    /// SwAV's ResNet-50 or an `efficientnet_lite_pytorch` EfficientNet-Lite, told apart by their names.
    fn from_torch(sd: TorchStateDict, device: &B::Device) -> Result<Self, CheckpointError> {
        if is_efficientnet_lite(&sd) {
            Ok(Self::EfficientNetLite(EfficientNetLite::from_torch(
                sd, device,
            )?))
        } else {
            Ok(Self::ResNet(ResNetImageEncoder::from_torch(sd, device)?))
        }
    }
}
