//! The pure RBAC engine: no I/O, no async. Everything secretscope decides is decided here;
//! admission handlers, the CLI and the cluster cache only translate to and from it.

pub mod audit;
pub mod azure;
pub mod budget;
mod builtin;
pub mod effective;
pub mod evaluate;
pub mod finding;
pub mod indirect;
mod memo;
pub mod model;
pub mod remediation;
pub mod rule;
pub mod secrets;
pub mod selector;
pub mod state;
pub mod text;
pub mod word;

pub use effective::{cluster_bindings, BindingPath, EffectiveRules, SourcedRule};
pub use evaluate::{
    evaluate, BindingScope, EvalOptions, GlobError, NameGlobs, RouteAction, SubjectPattern,
    EXEMPT_ANNOTATION,
};
pub use finding::{Finding, Route, RuleRef, Scope, Severity};
pub use indirect::IndirectRoute;
pub use model::{
    AnyRbacObject, ClusterRole, ClusterRoleBinding, ObjectRef, PolicyRule, RbacKind, RbacObject,
    Role, RoleBinding, Subject, RBAC_GROUP,
};
pub use secrets::{Reach, SecretsAccess, SecretsVerb};
pub use state::ClusterState;
pub use word::RuleWord;

#[cfg(test)]
mod tests;
