//! Who may do what: access control lists per principal, modelled on Mesos'
//! ACLs, and the one decision [`authorize`] that the broker's core and
//! shell ask, and agents for sandbox reads (Mesos' agents take ACLs too).
//!
//! Each action has its own list, the configuration key
//! `broker.acl.<action>` (for instance `broker.acl.register-framework`;
//! on an agent `agent.acl.view-framework`, see [`Action::agent_key`]). A
//! list is rules separated by `;`, each `PRINCIPALS: OBJECTS`:
//!
//! ```text
//! alice, bob: analytics, dev;  ops: *;  *: none
//! ```
//!
//! PRINCIPALS is `*` (anyone) or names; OBJECTS is `*` (any object),
//! `none` (nothing: the rule denies), or names. Rules are read in order and
//! the first whose principals take in the caller and whose objects take in
//! the object (or say `none`) decides. Nothing set anywhere: everything is
//! allowed (security off, as Weir has always run). Once any list is set,
//! whatever no rule allows is denied, for every action, lists left empty
//! included: a cluster that starts writing ACLs is closed by default.
//!
//! The decision is a pure function of (lists, principal, action, object):
//! no clock, no I/O, so it is tested on its own (properties below) and the
//! refusal says which rule refused, for the log and the caller.

use std::collections::BTreeMap;
use std::fmt;

/// Who is asking: a name from the token file (frameworks and operators),
/// or empty when authentication is off (anonymous).
pub type Principal = str;

/// What an ACL governs. The object each is asked about is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// SUBSCRIBE in a role; object: the role.
    RegisterFramework,
    /// Tear down a framework (an operator's teardown, or re-subscribing
    /// under another principal's framework id); object: the principal the
    /// framework belongs to.
    TeardownFramework,
    /// See a framework and its tasks in `/state`, GetState and the UI;
    /// object: the principal the framework belongs to.
    ViewFramework,
    /// RESERVE for a role; object: the role.
    Reserve,
    /// UNRESERVE a reservation of a role; object: the role.
    Unreserve,
    /// CREATE (or GROW, SHRINK, SYNC) a volume of a role; object: the role.
    CreateVolume,
    /// DESTROY a volume of a role; object: the role.
    DestroyVolume,
    /// Drain, schedule maintenance for, reactivate or mark gone an agent;
    /// object: the agent id.
    DrainAgent,
    /// Set a role's quota (guarantee, limit, priority band); object: the role.
    UpdateQuota,
    /// Set a role's weight; object: the role.
    UpdateWeight,
    /// See a role, its weight, quota and share (`/state`'s and GetState's
    /// roles, GetWeights, GetRolePolicies, the UI's roles); object: the
    /// role. As Mesos' `view_role`.
    ViewRole,
    /// Read an endpoint that shows the whole cluster's figures; object:
    /// its path (`/metrics`). As Mesos' `get_endpoints`.
    GetEndpoint,
}

impl Action {
    pub const ALL: [Action; 12] = [
        Action::RegisterFramework,
        Action::TeardownFramework,
        Action::ViewFramework,
        Action::Reserve,
        Action::Unreserve,
        Action::CreateVolume,
        Action::DestroyVolume,
        Action::DrainAgent,
        Action::UpdateQuota,
        Action::UpdateWeight,
        Action::ViewRole,
        Action::GetEndpoint,
    ];

    /// The action's name in its configuration key and in refusals.
    pub fn name(self) -> &'static str {
        match self {
            Action::RegisterFramework => "register-framework",
            Action::TeardownFramework => "teardown-framework",
            Action::ViewFramework => "view-framework",
            Action::Reserve => "reserve",
            Action::Unreserve => "unreserve",
            Action::CreateVolume => "create-volume",
            Action::DestroyVolume => "destroy-volume",
            Action::DrainAgent => "drain-agent",
            Action::UpdateQuota => "update-quota",
            Action::UpdateWeight => "update-weight",
            Action::ViewRole => "view-role",
            Action::GetEndpoint => "get-endpoint",
        }
    }

    /// `broker.acl.<name>`.
    pub fn key(self) -> String {
        Scope::Broker.key(self)
    }

    /// `agent.acl.<name>`: an agent decides `view-framework` itself (who
    /// reads which sandbox and sees which tasks in its `/state`).
    pub fn agent_key(self) -> String {
        Scope::Agent.key(self)
    }
}

/// Whose configuration the lists come from, for the keys that errors and
/// refusals name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    Broker,
    Agent,
}

impl Scope {
    fn key(self, action: Action) -> String {
        match self {
            Scope::Broker => format!("broker.acl.{}", action.name()),
            Scope::Agent => format!("agent.acl.{}", action.name()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Names {
    Any,
    Listed(Vec<String>),
}

impl Names {
    fn takes(&self, name: &str) -> bool {
        match self {
            Names::Any => true,
            Names::Listed(names) => names.iter().any(|n| n == name),
        }
    }
}

/// One rule of a list, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    principals: Names,
    /// None: the rule denies (`none`).
    objects: Option<Names>,
    text: String,
}

/// Every action's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acls {
    rules: BTreeMap<Action, Vec<Rule>>,
    scope: Scope,
}

/// A list that cannot be read, with the key and the rule at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: rule {index} ({rule:?}): {reason}")]
pub struct AclError {
    pub key: String,
    pub index: usize,
    pub rule: String,
    pub reason: String,
}

/// Longest list accepted per action (bounded input).
pub const MAX_RULES: usize = 1000;
const MAX_NAME: usize = 256;

impl Acls {
    /// No list set: everything allowed.
    pub fn open() -> Acls {
        Acls::default()
    }

    /// True when any list is set (and so default deny holds).
    pub fn any_set(&self) -> bool {
        !self.rules.is_empty()
    }

    /// Sets `action`'s list from its configuration text. An empty text
    /// leaves the action without rules.
    pub fn set(&mut self, action: Action, text: &str) -> Result<(), AclError> {
        let key = self.scope.key(action);
        let mut rules = Vec::new();
        for (i, raw) in text.split(';').map(str::trim).filter(|r| !r.is_empty()).enumerate() {
            let index = i + 1;
            let fail = |reason: String| AclError { key: key.clone(), index, rule: raw.chars().take(80).collect(), reason };
            if index > MAX_RULES {
                return Err(fail(format!("at most {MAX_RULES} rules per action")));
            }
            let (principals, objects) =
                raw.split_once(':').ok_or_else(|| fail("is not of the form PRINCIPALS: OBJECTS".to_owned()))?;
            let principals = names(principals).map_err(|r| fail(format!("principals: {r}")))?;
            let objects = if objects.trim().eq_ignore_ascii_case("none") {
                None
            } else {
                Some(names(objects).map_err(|r| fail(format!("objects: {r}")))?)
            };
            rules.push(Rule { principals, objects, text: raw.split_whitespace().collect::<Vec<_>>().join(" ") });
        }
        if rules.is_empty() {
            self.rules.remove(&action);
        } else {
            self.rules.insert(action, rules);
        }
        Ok(())
    }

    /// Builds the lists from `(action, text)` pairs.
    pub fn from_lists<'a>(lists: impl IntoIterator<Item = (Action, &'a str)>) -> Result<Acls, AclError> {
        Acls::scoped_from_lists(Scope::Broker, lists)
    }

    /// [`Acls::from_lists`] for an agent's `agent.acl.*` keys.
    pub fn scoped_from_lists<'a>(scope: Scope, lists: impl IntoIterator<Item = (Action, &'a str)>) -> Result<Acls, AclError> {
        let mut acls = Acls { rules: BTreeMap::new(), scope };
        for (action, text) in lists {
            acls.set(action, text)?;
        }
        Ok(acls)
    }
}

fn names(text: &str) -> Result<Names, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(Names::Any);
    }
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim) {
        if name.is_empty() {
            return Err("an empty name (use * for any)".to_owned());
        }
        if name == "*" {
            return Err("* stands alone, not in a list".to_owned());
        }
        if name.len() > MAX_NAME || name.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':' || c == ';') {
            return Err(format!("{:?} is not a name (at most {MAX_NAME} bytes, no spaces, ':' or ';')", name.chars().take(80).collect::<String>()));
        }
        out.push(name.to_owned());
    }
    Ok(Names::Listed(out))
}

/// Why an action was refused: the rule that denied it, or that none
/// allowed it while ACLs are on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub action: Action,
    /// The configuration key of the action's list (`broker.acl.…` or
    /// `agent.acl.…`).
    pub key: String,
    pub principal: String,
    pub object: String,
    /// (1-based index, text) of the denying rule; None: no rule allowed it.
    pub rule: Option<(usize, String)>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.principal.is_empty() { "the anonymous caller".to_owned() } else { format!("principal {:?}", self.principal) };
        write!(f, "permission denied: {who} may not {} {:?}: ", self.action.name(), self.object)?;
        match &self.rule {
            Some((index, text)) => write!(f, "rule {index} of {} ({text:?}) denies it", self.key),
            None => write!(
                f,
                "no rule of {} allows it (once any {}* list is set, what no rule allows is denied)",
                self.key,
                self.key.trim_end_matches(self.action.name())
            ),
        }
    }
}

/// May `principal` do `action` on `object`?
pub fn authorize(acls: &Acls, principal: &Principal, action: Action, object: &str) -> Result<(), Refusal> {
    if !acls.any_set() {
        return Ok(());
    }
    let refuse = |rule| Err(Refusal { action, key: acls.scope.key(action), principal: principal.to_owned(), object: object.to_owned(), rule });
    for (i, rule) in acls.rules.get(&action).into_iter().flatten().enumerate() {
        if !rule.principals.takes(principal) {
            continue;
        }
        match &rule.objects {
            None => return refuse(Some((i + 1, rule.text.clone()))),
            Some(objects) if objects.takes(object) => return Ok(()),
            Some(_) => {}
        }
    }
    refuse(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn acls(action: Action, text: &str) -> Acls {
        Acls::from_lists([(action, text)]).unwrap()
    }

    #[test]
    fn no_list_allows_everything() {
        assert!(authorize(&Acls::open(), "", Action::TeardownFramework, "anyone").is_ok());
    }

    #[test]
    fn the_first_matching_rule_decides_and_the_refusal_names_it() {
        let a = acls(Action::RegisterFramework, "alice, bob: analytics, dev;  ops: *; *: none");
        assert!(authorize(&a, "alice", Action::RegisterFramework, "dev").is_ok());
        assert!(authorize(&a, "ops", Action::RegisterFramework, "prod").is_ok());
        let refusal = authorize(&a, "alice", Action::RegisterFramework, "prod").unwrap_err();
        assert_eq!(refusal.rule, Some((3, "*: none".to_owned())));
        let text = refusal.to_string();
        assert!(text.contains("principal \"alice\" may not register-framework \"prod\""), "{text}");
        assert!(text.contains("rule 3 of broker.acl.register-framework (\"*: none\")"), "{text}");
    }

    #[test]
    fn once_any_list_is_set_other_actions_are_denied_by_default() {
        let a = acls(Action::RegisterFramework, "*: *");
        let refusal = authorize(&a, "alice", Action::DrainAgent, "a1").unwrap_err();
        assert_eq!(refusal.rule, None);
        assert!(refusal.to_string().contains("no rule of broker.acl.drain-agent allows it"), "{refusal}");
    }

    #[test]
    fn bad_lists_are_refused_with_key_and_rule() {
        let err = Acls::from_lists([(Action::Reserve, "alice: dev; bob")]).unwrap_err();
        assert_eq!((err.key.as_str(), err.index), ("broker.acl.reserve", 2));
        assert!(err.to_string().contains("is not of the form PRINCIPALS: OBJECTS"), "{err}");
        let err = Acls::from_lists([(Action::Reserve, "alice,,bob: dev")]).unwrap_err();
        assert!(err.reason.contains("empty name"), "{err}");
        let err = Acls::from_lists([(Action::Reserve, "alice: dev, *")]).unwrap_err();
        assert!(err.reason.contains("stands alone"), "{err}");
        assert_eq!(Acls::from_lists([(Action::Reserve, " ; ")]).unwrap(), Acls::open());
    }

    #[test]
    fn an_agents_lists_are_named_by_its_keys() {
        let a = Acls::scoped_from_lists(Scope::Agent, [(Action::ViewFramework, "alice: alice")]).unwrap();
        let refusal = authorize(&a, "bob", Action::ViewFramework, "alice").unwrap_err();
        let text = refusal.to_string();
        assert!(text.contains("no rule of agent.acl.view-framework allows it (once any agent.acl.* list is set"), "{text}");
        let err = Acls::scoped_from_lists(Scope::Agent, [(Action::ViewFramework, "alice")]).unwrap_err();
        assert_eq!(err.key, "agent.acl.view-framework");
    }

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["alice", "bob", "carol", "ops", "dev", "prod", "analytics"]).prop_map(str::to_owned)
    }

    fn names_text() -> impl Strategy<Value = String> {
        prop_oneof![Just("*".to_owned()), prop::collection::vec(name(), 1..3).prop_map(|n| n.join(", "))]
    }

    fn rule_text() -> impl Strategy<Value = String> {
        (names_text(), prop_oneof![3 => names_text(), 1 => Just("none".to_owned())]).prop_map(|(p, o)| format!("{p}: {o}"))
    }

    fn action() -> impl Strategy<Value = Action> {
        prop::sample::select(Action::ALL.to_vec())
    }

    /// The decision written the slow, obvious way: the rules' words.
    fn reference(rules: &[String], principal: &str, object: &str) -> bool {
        for rule in rules {
            let (p, o) = rule.split_once(':').unwrap();
            let list = |s: &str| s.split(',').map(str::trim).map(str::to_owned).collect::<Vec<_>>();
            let p_ok = p.trim() == "*" || list(p).iter().any(|x| x == principal);
            if !p_ok {
                continue;
            }
            if o.trim() == "none" {
                return false;
            }
            if o.trim() == "*" || list(o).iter().any(|x| x == object) {
                return true;
            }
        }
        false
    }

    proptest! {
        #[test]
        fn decisions_follow_the_rules_in_order(
            rules in prop::collection::vec(rule_text(), 1..6),
            act in action(),
            principal in name(),
            object in name(),
        ) {
            let a = acls(act, &rules.join("; "));
            let decided = authorize(&a, &principal, act, &object);
            prop_assert_eq!(decided.is_ok(), reference(&rules, &principal, &object));
            if let Err(refusal) = decided {
                // A refusal names a rule that says `none` and takes in the
                // principal, or none at all.
                if let Some((index, text)) = &refusal.rule {
                    prop_assert!(text.ends_with("none"));
                    prop_assert!(*index >= 1 && *index <= rules.len());
                }
                prop_assert_eq!(refusal.principal, principal);
            }
        }

        #[test]
        fn another_actions_rules_never_allow(
            rules in prop::collection::vec(rule_text(), 1..6),
            set in action(),
            asked in action(),
            principal in name(),
            object in name(),
        ) {
            prop_assume!(set != asked);
            let a = acls(set, &rules.join("; "));
            prop_assert!(authorize(&a, &principal, asked, &object).is_err());
        }

        #[test]
        fn a_principal_no_rule_names_is_denied(
            rules in prop::collection::vec(rule_text(), 1..6),
            act in action(),
            object in name(),
        ) {
            let a = acls(act, &rules.join("; ").replace('*', "alice"));
            prop_assert!(authorize(&a, "mallory", act, &object).is_err());
        }
    }
}
