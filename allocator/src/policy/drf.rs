//! Weighted Dominant Resource Fairness (the default): roles by weighted
//! dominant share, clients within a role by dominant share. Priority bands
//! are ignored.

use super::{share_bits, ClientView, Policy, RoleView};

#[derive(Clone, Copy, Debug, Default)]
pub struct Drf;

impl Policy for Drf {
    fn name(&self) -> &'static str {
        "drf"
    }

    fn client_key(&self, client: &ClientView) -> u64 {
        share_bits(client.share)
    }

    fn role_key(&self, role: &RoleView) -> (u64, u64) {
        (share_bits(role.weighted_share), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_weighted_share_first_and_bands_ignored() {
        let role = |weighted_share, priority| RoleView { weighted_share, priority, first_member: 0 };
        assert!(Drf.role_key(&role(0.1, 0)) < Drf.role_key(&role(0.2, 9)));
        assert_eq!(Drf.role_key(&role(0.1, 0)), Drf.role_key(&role(0.1, 5)));
        let client = |share, arrival| ClientView { share, arrival };
        assert!(Drf.client_key(&client(0.1, 7)) < Drf.client_key(&client(0.3, 1)));
    }
}
