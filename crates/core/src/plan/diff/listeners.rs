//! Listeners: match each desired listener to the observed one on its port (re-use it, enable
//! SNI, replace it when the protocol changed, or report a port held by a foreign listener), and
//! find the owned listeners no longer wanted.

use super::*;

/// Is this observed listener clb-ingress's to change or delete?
fn owns_listener(own: &Ownership, l: &ObservedListener) -> bool {
    own.lb_owned || l.name == own.listener_name
}

/// The listener a desired listener syncs to and its observed rules; None (with a conflict)
/// when its port is held by a listener clb-ingress does not own.
pub(super) fn diff_listener<'o>(
    dl: &DesiredListener,
    observed_listeners: &'o [ObservedListener],
    own: &Ownership,
    phases: &mut Phases,
    conflicts: &mut Vec<String>,
) -> Option<(ListenerRef, &'o [ObservedRule])> {
    let existing = observed_listeners.iter().find(|l| l.port == dl.port);
    match existing {
        Some(ol) if !owns_listener(own, ol) => {
            conflicts.push(format!(
                "port {} is used by listener {} ({}), which clb-ingress did not create; {} {} is not synced",
                dl.port,
                ol.id,
                ol.name,
                dl.protocol.as_str(),
                dl.port
            ));
            None
        }
        Some(ol) if ol.protocol == dl.protocol => {
            if dl.sni && !ol.sni {
                phases.sni.push(Change::EnableSni {
                    listener: ol.id.clone(),
                    port: ol.port,
                });
            }
            Some((ListenerRef::Id(ol.id.clone()), ol.rules.as_slice()))
        }
        other => {
            if let Some(ol) = other {
                phases
                    .replace_deletes
                    .push((ol.id.clone(), ol.protocol, ol.port));
            }
            phases.listener_creates.push(Change::CreateListener {
                protocol: dl.protocol,
                port: dl.port,
                name: dl.name.clone(),
                sni: dl.sni,
            });
            Some((
                ListenerRef::New {
                    protocol: dl.protocol,
                    port: dl.port,
                },
                &[],
            ))
        }
    }
}

/// Owned listeners on ports no desired listener uses any more.
pub(super) fn stale_listeners(
    desired: &DesiredLb,
    observed_listeners: &[ObservedListener],
    own: &Ownership,
) -> Vec<(String, Protocol, u16)> {
    observed_listeners
        .iter()
        .filter(|ol| !desired.listeners.iter().any(|d| d.port == ol.port) && owns_listener(own, ol))
        .map(|ol| (ol.id.clone(), ol.protocol, ol.port))
        .collect()
}
