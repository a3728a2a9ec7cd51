//! Layers: the tar diff between a snapshot and its parent, compressed, in the content store.

mod apply;
mod at;
mod compression;
mod export;
mod gzip;
mod tarfmt;

pub use apply::{apply_layer, ApplyError, ApplyOptions, ApplyReport, ApplyWarning, WhiteoutStyle};
pub use compression::Compression;
pub(crate) use export::export_entries;
pub use export::{
    export_layer, recompress_layer, ExportError, ExportOptions, ExportProgress, LayerDescriptor,
};
