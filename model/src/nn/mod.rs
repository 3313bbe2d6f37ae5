//! Networks and their building blocks, with parameters under the official state_dict names.

pub mod init;
pub mod loss;
pub mod net;
pub mod params;
pub mod rfaconv;
pub mod rsss;
pub mod usema;
pub mod vm_unet;
