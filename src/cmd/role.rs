//! `weir role` (also `weir quota`): the operator's view and control of
//! role policies: weight, priority band, guarantee and limit per role
//! (nested roles included), through the leading broker's Operator API
//! (`GetRolePolicies`, `SetRolePolicies`).

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use weir_broker::core::roles::{role_policy_from_proto, role_policy_to_proto, RolePolicy};
use weir_model::{Limits, Milli, Resources, Role};
use weir_proto::{convert, v1};

use crate::cmd::status::{operator, p, refused, table, BrokerArg};
use crate::settings::Options;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: RoleCommand,
}

#[derive(clap::Subcommand, Debug)]
enum RoleCommand {
    /// List roles: weight, band, guarantee, limit, what each consumes.
    List {
        #[command(flatten)]
        broker: BrokerArg,
    },
    /// Change a role's policy; what is not given stays as it is.
    Set {
        #[command(flatten)]
        broker: BrokerArg,
        /// The role, e.g. eng/analytics (roles nest with '/').
        role: String,
        /// Weight among its siblings (> 0; 1 by default).
        #[arg(long)]
        weight: Option<f64>,
        /// Priority band for the strict-priority policy (higher first; 0 by default).
        #[arg(long)]
        priority: Option<u32>,
        /// Guaranteed resources for its subtree, e.g. "cpus:10;mem:20480", or "none".
        #[arg(long, value_name = "SPEC")]
        guarantee: Option<String>,
        /// Limit per kind for its subtree, e.g. "cpus:40" (other kinds
        /// unlimited), or "none".
        #[arg(long, value_name = "SPEC")]
        limit: Option<String>,
        /// Accept guarantees the cluster's reachable agents do not hold
        /// yet (agents still joining).
        #[arg(long)]
        force: bool,
    },
    /// Put a role back to the defaults: weight 1, band 0, no quota.
    Reset {
        #[command(flatten)]
        broker: BrokerArg,
        role: String,
    },
}

pub async fn main(options: &Options, args: Args) -> Result<ExitCode> {
    match args.command {
        RoleCommand::List { broker } => {
            let mut client = operator(options, broker).await?;
            let response = client.get_role_policies(v1::GetRolePoliciesRequest {}).await.map_err(refused)?.into_inner();
            print!("{}", render_list(&response)?);
        }
        RoleCommand::Set { broker, role, weight, priority, guarantee, limit, force } => {
            let mut client = operator(options, broker).await?;
            let current = client.get_role_policies(v1::GetRolePoliciesRequest {}).await.map_err(refused)?.into_inner();
            let mut policy = match current.roles.iter().find(|r| r.role == role) {
                Some(wire) => role_policy_from_proto("current", wire).map_err(anyhow::Error::msg)?,
                None => RolePolicy::default_for(Role::new(role.clone())),
            };
            if let Some(weight) = weight {
                policy.weight = weight;
            }
            if let Some(priority) = priority {
                policy.priority = priority;
            }
            if let Some(spec) = guarantee {
                policy.quota.guarantee = parse_guarantee(&spec)?;
            }
            if let Some(spec) = limit {
                policy.quota.limit = parse_limit(&spec)?;
            }
            let request = v1::SetRolePoliciesRequest { roles: vec![role_policy_to_proto(&policy)], force };
            client.set_role_policies(request).await.map_err(refused)?;
            println!(
                "role {}: weight {}, band {}, guarantee {}, limit {}",
                p(&role),
                policy.weight,
                policy.priority,
                guarantee_text(&policy.quota.guarantee),
                policy.quota.limit
            );
        }
        RoleCommand::Reset { broker, role } => {
            let mut client = operator(options, broker).await?;
            let request = v1::SetRolePoliciesRequest { roles: vec![role_policy_to_proto(&RolePolicy::default_for(Role::new(role.clone())))], force: false };
            client.set_role_policies(request).await.map_err(refused)?;
            println!("role {}: back to the defaults", p(&role));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A guarantee spec: scalars as in `--resources` (`cpus:4;mem:2048`), or
/// `none`.
pub fn parse_guarantee(spec: &str) -> Result<Resources> {
    if spec.trim().is_empty() || spec.trim() == "none" {
        return Ok(Resources::default());
    }
    let r = Resources::parse(spec).with_context(|| format!("--guarantee {spec:?}"))?;
    if !r.ports.is_empty() {
        bail!("--guarantee {spec:?}: ports cannot be guaranteed (quotas are cpus, mem, disk, gpus)");
    }
    Ok(r)
}

/// A limit spec: `cpus:40;mem:81920` (kinds not named are unlimited; `:0`
/// allows none), or `none`.
pub fn parse_limit(spec: &str) -> Result<Limits> {
    let mut limits = Limits::default();
    if spec.trim().is_empty() || spec.trim() == "none" {
        return Ok(limits);
    }
    for part in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, value)) = part.split_once(':') else { bail!("--limit {spec:?}: {part:?} is not of the form kind:value") };
        let value: f64 = value.trim().parse().map_err(|_| anyhow::anyhow!("--limit {spec:?}: {value:?} is not a number"))?;
        let milli = Milli::from_f64(value).ok_or_else(|| anyhow::anyhow!("--limit {spec:?}: {value} is not a number >= 0"))?;
        let slot = limits.get_mut(name.trim()).ok_or_else(|| anyhow::anyhow!("--limit {spec:?}: unknown kind {name:?}; limits are for cpus, mem, disk and gpus"))?;
        if slot.replace(milli).is_some() {
            bail!("--limit {spec:?}: {name} is named twice");
        }
    }
    Ok(limits)
}

fn guarantee_text(r: &Resources) -> String {
    if r.is_empty() {
        "none".to_owned()
    } else {
        r.to_string()
    }
}

/// The roles as a table, the policy and any shortfall above it.
pub fn render_list(response: &v1::GetRolePoliciesResponse) -> Result<String> {
    let lack = convert::unreserved_from_proto("guarantee_shortfall", &response.guarantee_shortfall)?;
    let mut out = format!("policy: {}", p(&response.policy));
    if !lack.is_empty() {
        out.push_str(&format!("; guaranteed roles lack {lack} (held back from the others)"));
    }
    out.push('\n');
    let mut t = table(&["ROLE", "WEIGHT", "BAND", "GUARANTEE", "LIMIT", "CONSUMED", "REVOCABLE", "SHARE"]);
    for wire in &response.roles {
        let policy = role_policy_from_proto("roles", wire).map_err(anyhow::Error::msg)?;
        let consumed = convert::unreserved_from_proto("consumed", &wire.consumed)?;
        // The lent part of what it consumes: revoked first.
        let revocable = convert::unreserved_from_proto("revocable", &wire.revocable)?;
        t.add_row(vec![
            p(&wire.role),
            format!("{}", policy.weight),
            policy.priority.to_string(),
            guarantee_text(&policy.quota.guarantee),
            policy.quota.limit.to_string(),
            guarantee_text(&consumed).replace("none", "-"),
            guarantee_text(&revocable).replace("none", "-"),
            format!("{:.1}%", wire.dominant_share * 100.0),
        ]);
    }
    out.push_str(&format!("{t}\n"));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_are_named() {
        assert_eq!(parse_limit("cpus:40;gpus:0").unwrap(), Limits { cpus: Some(Milli::from_units(40)), gpus: Some(Milli(0)), ..Limits::default() });
        assert_eq!(parse_limit("none").unwrap(), Limits::default());
        assert!(parse_limit("ports:3").unwrap_err().to_string().contains("unknown kind"));
        assert!(parse_limit("cpus:1;cpus:2").unwrap_err().to_string().contains("named twice"));
        assert!(parse_limit("cpus:-1").is_err());
        assert_eq!(parse_guarantee("cpus:2;mem:1024").unwrap(), Resources::parse("cpus:2;mem:1024").unwrap());
        assert!(parse_guarantee("ports:[1-2]").unwrap_err().to_string().contains("cannot be guaranteed"));
    }

    #[test]
    fn the_table_shows_every_field_readably() {
        let policy = RolePolicy {
            role: Role::new("eng/web"),
            weight: 2.0,
            priority: 1,
            quota: weir_model::Quota { guarantee: Resources::parse("cpus:4").unwrap(), limit: parse_limit("cpus:10").unwrap() },
        };
        let mut wire = role_policy_to_proto(&policy);
        wire.consumed = convert::resources_to_proto(&weir_model::ResourceSet::unreserved(Resources::parse("cpus:3;mem:512").unwrap()));
        wire.revocable = convert::resources_to_proto(&weir_model::ResourceSet::unreserved(Resources::parse("cpus:2").unwrap()));
        wire.dominant_share = 0.25;
        let response = v1::GetRolePoliciesResponse {
            policy: "drf".into(),
            roles: vec![wire],
            guarantee_shortfall: convert::resources_to_proto(&weir_model::ResourceSet::unreserved(Resources::parse("cpus:1").unwrap())),
        };
        let text = render_list(&response).unwrap();
        assert!(text.starts_with("policy: drf; guaranteed roles lack cpus:1 (held back from the others)\n"), "{text}");
        let row = text.lines().find(|l| l.contains("eng/web")).unwrap();
        for cell in ["2", "1", "cpus:4", "cpus:10", "cpus:3;mem:512", "cpus:2", "25.0%"] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        let header = text.lines().nth(1).unwrap();
        assert!(header.contains("CONSUMED") && header.contains("REVOCABLE"), "{header}");
    }
}
