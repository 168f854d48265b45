//! The greedy baseline: take pairs in order of value while budgets and caps
//! allow; withhold campaigns below their floor and redo without them. Kept so the
//! gain of the Lagrangian solver can be measured.

use super::Allocation;
use super::instance::Instance;
use super::selection::Selection;

pub(crate) fn solve(instance: &Instance) -> Allocation {
    let order = instance.order_by(|i| instance.value(i));
    let mut open = instance.initially_open();
    loop {
        let mut selection = Selection::new(instance);
        selection.fill(instance, &order, &open);
        if !selection.enforce_floors(instance, &mut open, false) {
            return selection.finish(instance, open, None, 0);
        }
    }
}
