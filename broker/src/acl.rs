//! The ACLs live in `weir_model::acl`, since agents apply them too (to
//! sandbox reads); the broker's code names them here as before.

pub use weir_model::acl::*;
