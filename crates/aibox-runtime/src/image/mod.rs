//! Images and templates: the content-addressed OCI store (`oci`, with the
//! hostile-tar boundary), the registry client (`registry`), recipes
//! (`recipe`: aibox.toml and Dockerfiles) and their builder (`build`),
//! snapshot layers (`layer`), and the template a sandbox starts from
//! (`template`: an image's layers, or the host's own userland).

pub mod build;
pub mod layer;
pub mod oci;
pub mod recipe;
pub mod registry;
pub mod template;
