//! The money invariants, model-checked (stateright) over every interleaving
//! of one order's life within a bound.
//!
//! The world is the processor's record (carried out exactly as the store
//! does: read, decide with [`super::next`], write only if the record's
//! version is still the one read), the inbox, the order service's status
//! (decided by `order_service::domain::lifecycle::decide`), the messages in
//! the stream, the handlers working on them, and a payment provider that
//! keeps its promises (one decision per key, refunds and voids once).
//!
//! What may happen, in any order:
//! - the placement and the customer's cancellation are
//!   delivered, redelivered while a handler still works on them (an ack
//!   wait running out), or re-published under the same id;
//! - a provider call succeeds, fails before acting (outage), or acts and
//!   loses its answer; an authorization may be approved or declined;
//! - a handler crashes at any step; a failed attempt is retried until the
//!   attempts are spent, then the message is dead-lettered;
//! - an operator redrives a dead letter, or purges it (the purge is refused
//!   when the provider cannot be reached).
//!
//! The bound ([`Bound`]) limits deliveries per copy, attempts, crashes,
//! re-publishes, redrives and handlers at once. The properties are listed
//! in [`Model::properties`] and in docs/architecture.md.

use stateright::{Checker as _, Model, Property};

use crate::order::{self as order_lifecycle, Change, OrderStatus, StatusChange};
use crate::payment::{Answer, Call, Input, Kind, Record, Stage, Step, Then, Verdict, Voided};

/// A decision of a logic under test.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Decision {
    Step(Step),
    /// Not actionable yet: redeliver later (the old cancellation logic).
    Defer,
}

/// The processor's logic as the model drives it: today's machine, or the
/// one it replaced (to show the checker finds what was wrong with it).
pub(super) trait Logic: Send + Sync + 'static {
    fn decide(&self, record: &Record, input: &Input) -> Decision;

    /// A call whose answer was lost is a permanent failure.
    fn lost_answer_is_permanent(&self) -> bool {
        false
    }

    /// JetStream's delivery cap decides: at the last delivery the bound
    /// allows, the message is dead-lettered, whatever it was doing.
    fn delivery_cap_decides(&self) -> bool {
        false
    }
}

/// Today's machine.
pub(super) struct Machine;

impl Logic for Machine {
    fn decide(&self, record: &Record, input: &Input) -> Decision {
        Decision::Step(crate::payment::next(record, input))
    }
}

/// How far the checker looks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bound {
    /// Deliveries of each copy of a message.
    pub deliveries: u8,
    /// Failed attempts before a message is dead-lettered.
    pub attempts: u8,
    /// Handlers (and purges) at once.
    pub handlers: usize,
    pub crashes: u8,
    /// Copies re-published under an id already used.
    pub republishes: u8,
    pub redrives: u8,
}

impl Bound {
    /// The bound from `ORDO_MODEL_BOUND` (six numbers, comma-separated, in
    /// field order), or [`Bound::TESTED`].
    pub fn from_env() -> Self {
        let Ok(raw) = std::env::var("ORDO_MODEL_BOUND") else {
            return Self::TESTED;
        };
        let numbers: Vec<u8> = raw
            .split(',')
            .map(|part| part.trim().parse().expect("ORDO_MODEL_BOUND: numbers"))
            .collect();
        let [
            deliveries,
            attempts,
            handlers,
            crashes,
            republishes,
            redrives,
        ] = numbers[..]
        else {
            panic!("ORDO_MODEL_BOUND: six numbers");
        };
        Self {
            deliveries,
            attempts,
            handlers: usize::from(handlers),
            crashes,
            republishes,
            redrives,
        }
    }

    /// What `./dev test` checks (README and docs/architecture.md state it).
    pub const TESTED: Self = Self {
        deliveries: 2,
        attempts: 2,
        handlers: 2,
        crashes: 1,
        republishes: 1,
        redrives: 1,
    };
}

const PAYMENT: &str = "p";
const REFUND: &str = "r";

/// The world of one order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct World {
    record: Record,
    provider: Provider,
    order: OrderStatus,
    messages: Vec<Message>,
    /// Message ids the processor's inbox holds, sorted.
    inbox: Vec<u8>,
    handlers: Vec<Handler>,
    crashes_left: u8,
    republishes_left: u8,
    redrives_left: u8,
    next_id: u8,
    /// A final stage of the record was left (a violation).
    left_final: bool,
    /// An ended order's status changed (a violation).
    order_left_final: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Message {
    id: u8,
    kind: Kind,
    deliveries: u8,
    attempts: u8,
    state: Delivery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Delivery {
    /// In the stream, not acked.
    Live,
    Acked,
    /// In the dead-letter stream.
    Parked,
    /// Its dead letter was redriven or purged.
    Gone,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Handler {
    source: Source,
    input: Input,
    phase: Phase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Message(usize),
    /// An operator's purge of this message's dead letter.
    Purge(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[allow(clippy::large_enum_variant)] // states are cloned whole anyway
enum Phase {
    /// Look up the inbox and the record, and decide.
    Read,
    /// Decided on the record `read`: write if nobody wrote since (`fresh`;
    /// the store compares the record's version), then act.
    Decided {
        read: Record,
        fresh: bool,
        step: Step,
    },
    Calling(Call),
    /// The attempt failed: record it, then retry later or give up.
    Failed {
        transient: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Provider {
    key: Key,
    approvals: u8,
    refunds: u8,
}

/// What the order's authorization key led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Unused,
    Approved { refunded: bool },
    Declined,
    Voided,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Action {
    Deliver(usize),
    /// One step of a handler that needs nobody else.
    Advance(usize),
    /// The provider acts and answers (an authorization approved or not).
    Answer(usize, bool),
    /// The provider acts; its answer is lost.
    LoseAnswer(usize),
    /// The provider is down: nothing happens.
    Fail(usize),
    Crash(usize),
    /// The customer cancels.
    Cancel,
    Republish(usize),
    Redrive(usize),
    Purge(usize),
}

/// The model: a logic, and the bound it is checked within.
pub(super) struct OrderModel<L> {
    pub logic: L,
    pub bound: Bound,
}

impl<L: Logic> OrderModel<L> {
    fn initial(&self) -> World {
        World {
            record: Record::new(),
            provider: Provider {
                key: Key::Unused,
                approvals: 0,
                refunds: 0,
            },
            order: OrderStatus::Pending,
            messages: vec![Message::new(0, Kind::Placement)],
            inbox: Vec::new(),
            handlers: Vec::new(),
            crashes_left: self.bound.crashes,
            republishes_left: self.bound.republishes,
            redrives_left: self.bound.redrives,
            next_id: 1,
            left_final: false,
            order_left_final: false,
        }
    }

    fn decide(&self, record: &Record, input: &Input) -> Decision {
        match self.logic.decide(record, input) {
            Decision::Step(mut step) => {
                step.record.reason.clear();
                Decision::Step(step)
            }
            Decision::Defer => Decision::Defer,
        }
    }

    fn advance(&self, world: &mut World, index: usize) {
        let handler = world.handlers[index].clone();
        match handler.phase.clone() {
            Phase::Read => self.read(world, index, &handler),
            Phase::Decided { read, fresh, step } => {
                self.carry_out(world, index, &handler, &read, fresh, step)
            }
            Phase::Calling(_) => {}
            Phase::Failed { transient } => self.fail(world, index, &handler, transient),
        }
    }

    fn read(&self, world: &mut World, index: usize, handler: &Handler) {
        if let Source::Message(m) = handler.source {
            let message = &world.messages[m];
            if world.inbox.contains(&message.id) {
                world.settle_message(m);
                world.handlers.remove(index);
                return;
            }
            if self.logic.delivery_cap_decides() && message.deliveries >= self.bound.deliveries {
                world.handlers[index].phase = Phase::Failed { transient: false };
                return;
            }
        }
        match self.decide(&world.record, &handler.input) {
            Decision::Defer => {
                world.handlers.remove(index);
            }
            Decision::Step(step) => {
                world.handlers[index].phase = Phase::Decided {
                    read: world.record.clone(),
                    fresh: true,
                    step,
                };
            }
        }
    }

    fn carry_out(
        &self,
        world: &mut World,
        index: usize,
        handler: &Handler,
        read: &Record,
        fresh: bool,
        step: Step,
    ) {
        match step.then {
            Then::Call(call) => {
                if step.record != *read {
                    if !fresh {
                        world.handlers[index].phase = Phase::Read;
                        return;
                    }
                    world.write(step.record);
                }
                world.handlers[index].phase = Phase::Calling(call);
            }
            Then::Settle { verdict, .. } => {
                let seen = match handler.source {
                    Source::Message(m) => world.inbox.contains(&world.messages[m].id),
                    Source::Purge(_) => false,
                };
                if !fresh || seen {
                    world.handlers[index].phase = Phase::Read;
                    return;
                }
                world.write(step.record);
                if let Some(verdict) = verdict {
                    world.publish(verdict);
                }
                match handler.source {
                    Source::Message(m) => {
                        let id = world.messages[m].id;
                        insert_sorted(&mut world.inbox, id);
                        world.settle_message(m);
                    }
                    Source::Purge(m) => world.messages[m].state = Delivery::Gone,
                }
                world.handlers.remove(index);
            }
        }
    }

    fn fail(&self, world: &mut World, index: usize, handler: &Handler, transient: bool) {
        let Source::Message(m) = handler.source else {
            // A purge the provider could not serve is refused: nothing changes.
            world.handlers.remove(index);
            return;
        };
        let kind = world.messages[m].kind;
        world.messages[m].attempts += 1;
        if let Decision::Step(step) = self.decide(
            &world.record,
            &Input::Failed {
                kind,
                reason: String::new(),
            },
        ) {
            world.write(step.record);
        }
        if transient && world.messages[m].attempts < self.bound.attempts {
            world.handlers.remove(index);
            return;
        }
        world.messages[m].state = Delivery::Parked;
        if let Decision::Step(step) = self.decide(
            &world.record,
            &Input::GaveUp {
                kind,
                reason: String::new(),
            },
        ) {
            world.write(step.record);
        }
        world.handlers.remove(index);
    }

    /// The provider acts on `call`; its answer, if it has one.
    fn provide(&self, world: &mut World, call: &Call, approve: bool) -> Option<Answer> {
        let provider = &mut world.provider;
        match (call, provider.key) {
            (Call::Authorize, Key::Unused) if approve => {
                provider.key = Key::Approved { refunded: false };
                provider.approvals += 1;
                Some(approved())
            }
            (Call::Authorize, Key::Unused) => {
                provider.key = Key::Declined;
                Some(declined())
            }
            (Call::Authorize, Key::Approved { .. }) => Some(approved()),
            (Call::Authorize, Key::Declined | Key::Voided) => Some(declined()),
            (Call::Void, Key::Unused) => {
                provider.key = Key::Voided;
                Some(Answer::Voided(Voided::NothingCharged))
            }
            (Call::Void, Key::Declined | Key::Voided) => {
                Some(Answer::Voided(Voided::NothingCharged))
            }
            (Call::Void, Key::Approved { refunded }) => {
                if !refunded {
                    provider.refunds += 1;
                    provider.key = Key::Approved { refunded: true };
                }
                Some(Answer::Voided(Voided::Refunded {
                    payment_id: PAYMENT.into(),
                    refund_id: REFUND.into(),
                }))
            }
            (Call::Refund { .. }, Key::Approved { refunded }) => {
                if !refunded {
                    provider.refunds += 1;
                    provider.key = Key::Approved { refunded: true };
                }
                Some(Answer::Refunded {
                    refund_id: REFUND.into(),
                })
            }
            // A refund of a payment that was never approved: refused.
            (Call::Refund { .. }, _) => None,
        }
    }

    fn answer(&self, world: &mut World, index: usize, approve: bool, lost: bool) {
        let Phase::Calling(call) = world.handlers[index].phase.clone() else {
            return;
        };
        let answer = self.provide(world, &call, approve);
        let handler = &mut world.handlers[index];
        match answer {
            Some(answer) if !lost => {
                handler.input = match &handler.input {
                    Input::Purge { reason, .. } => Input::Purge {
                        reason: reason.clone(),
                        answer: Some(answer),
                    },
                    _ => Input::Answer(answer),
                };
                handler.phase = Phase::Read;
            }
            Some(_) => {
                handler.phase = Phase::Failed {
                    transient: !self.logic.lost_answer_is_permanent(),
                }
            }
            None => handler.phase = Phase::Failed { transient: false },
        }
    }

    fn quiescent(world: &World) -> bool {
        world.handlers.is_empty()
            && world
                .messages
                .iter()
                .all(|message| matches!(message.state, Delivery::Acked | Delivery::Gone))
    }
}

fn approved() -> Answer {
    Answer::Approved {
        payment_id: PAYMENT.into(),
    }
}

fn declined() -> Answer {
    Answer::Declined {
        reason: "declined".into(),
    }
}

fn insert_sorted(ids: &mut Vec<u8>, id: u8) {
    if let Err(at) = ids.binary_search(&id) {
        ids.insert(at, id);
    }
}

impl Message {
    fn new(id: u8, kind: Kind) -> Self {
        Self {
            id,
            kind,
            deliveries: 0,
            attempts: 0,
            state: Delivery::Live,
        }
    }

    fn input(&self) -> Input {
        match self.kind {
            Kind::Placement => Input::Placed,
            Kind::Cancellation => Input::Cancelled,
        }
    }
}

impl World {
    fn write(&mut self, mut record: Record) {
        record.reason.clear();
        // The one move out of a final stage: a cancellation that crossed a
        // decline relabels REJECTED as CANCELLED (nothing was charged either way).
        let relabel = self.record.stage == Stage::Rejected && record.stage == Stage::Cancelled;
        if self.record.stage.is_final() && record.stage != self.record.stage && !relabel {
            self.left_final = true;
        }
        self.record = record;
        for handler in &mut self.handlers {
            if let Phase::Decided { fresh, .. } = &mut handler.phase {
                *fresh = false;
            }
        }
    }

    fn settle_message(&mut self, m: usize) {
        if self.messages[m].state == Delivery::Live {
            self.messages[m].state = Delivery::Acked;
        }
    }

    /// The order service applies a verdict. Verdicts are applied as they
    /// are published: the customer's cancellation still interleaves with
    /// each, and the order service's inbox (tested on its own) drops copies.
    fn publish(&mut self, verdict: Verdict) {
        let change = match verdict {
            Verdict::Confirmed { payment_id } => StatusChange::Confirmed { payment_id },
            Verdict::Rejected { .. } => StatusChange::Rejected {
                reason: String::new(),
            },
            Verdict::Refunded { payment_id, .. } => StatusChange::Refunded { payment_id },
        };
        if let order_lifecycle::Decision::Move { status, .. } =
            order_lifecycle::decide(self.order, &Change::Verdict(change))
        {
            if self.order.is_final() {
                self.order_left_final = true;
            }
            self.order = status;
        }
    }

    fn fresh_id(&mut self) -> u8 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn parked(&self) -> impl Iterator<Item = &Message> {
        self.messages
            .iter()
            .filter(|message| message.state == Delivery::Parked)
    }

    fn net_charged(&self) -> i16 {
        i16::from(self.provider.approvals) - i16::from(self.provider.refunds)
    }
}

impl<L: Logic> Model for OrderModel<L> {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        vec![self.initial()]
    }

    fn actions(&self, world: &World, actions: &mut Vec<Action>) {
        let room = world.handlers.len() < self.bound.handlers;
        for (m, message) in world.messages.iter().enumerate() {
            if message.state == Delivery::Live && message.deliveries < self.bound.deliveries && room
            {
                actions.push(Action::Deliver(m));
            }
            if world.republishes_left > 0 && message.state != Delivery::Live {
                actions.push(Action::Republish(m));
            }
            if message.state == Delivery::Parked {
                if world.redrives_left > 0 {
                    actions.push(Action::Redrive(m));
                }
                let purging = world
                    .handlers
                    .iter()
                    .any(|handler| handler.source == Source::Purge(m));
                if !purging && room {
                    actions.push(Action::Purge(m));
                }
            }
        }
        for (index, handler) in world.handlers.iter().enumerate() {
            match &handler.phase {
                Phase::Calling(call) => {
                    actions.push(Action::Answer(index, true));
                    if *call == Call::Authorize && world.provider.key == Key::Unused {
                        actions.push(Action::Answer(index, false));
                    }
                    actions.push(Action::LoseAnswer(index));
                    actions.push(Action::Fail(index));
                }
                _ => actions.push(Action::Advance(index)),
            }
            if world.crashes_left > 0 {
                actions.push(Action::Crash(index));
            }
        }
        if matches!(
            order_lifecycle::decide(world.order, &Change::Cancel),
            order_lifecycle::Decision::Move { .. }
        ) {
            actions.push(Action::Cancel);
        }
    }

    fn next_state(&self, world: &World, action: Action) -> Option<World> {
        let mut world = world.clone();
        match action {
            Action::Deliver(m) => {
                let message = &mut world.messages[m];
                message.deliveries += 1;
                let input = message.input();
                world.handlers.push(Handler {
                    source: Source::Message(m),
                    input,
                    phase: Phase::Read,
                });
            }
            Action::Advance(index) => self.advance(&mut world, index),
            Action::Answer(index, approve) => self.answer(&mut world, index, approve, false),
            Action::LoseAnswer(index) => self.answer(&mut world, index, true, true),
            Action::Fail(index) => {
                world.handlers[index].phase = Phase::Failed { transient: true };
            }
            Action::Crash(index) => {
                world.crashes_left -= 1;
                world.handlers.remove(index);
            }
            Action::Cancel => {
                if let order_lifecycle::Decision::Move { status, .. } =
                    order_lifecycle::decide(world.order, &Change::Cancel)
                {
                    world.order = status;
                    let id = world.fresh_id();
                    world.messages.push(Message::new(id, Kind::Cancellation));
                }
            }
            Action::Republish(m) => {
                world.republishes_left -= 1;
                let copy = Message::new(world.messages[m].id, world.messages[m].kind);
                world.messages.push(copy);
            }
            Action::Redrive(m) => {
                world.redrives_left -= 1;
                world.messages[m].state = Delivery::Gone;
                let id = world.fresh_id();
                let kind = world.messages[m].kind;
                world.messages.push(Message::new(id, kind));
            }
            Action::Purge(m) => world.handlers.push(Handler {
                source: Source::Purge(m),
                input: Input::Purge {
                    reason: "operator".into(),
                    answer: None,
                },
                phase: Phase::Read,
            }),
        }
        Some(world)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("a payment is captured at most once", |_, world: &World| {
                world.provider.approvals <= 1
            }),
            Property::always("refunds never exceed captures", |_, world: &World| {
                world.provider.refunds <= world.provider.approvals
            }),
            Property::always(
                "a confirmed record holds exactly one capture",
                |_, world: &World| {
                    world.record.stage != Stage::Confirmed
                        || (world.provider.approvals == 1 && world.provider.refunds == 0)
                },
            ),
            Property::always(
                "a final record holds nothing charged",
                |_, world: &World| !world.record.stage.is_final() || world.net_charged() == 0,
            ),
            Property::always(
                "a final record never changes (but for REJECTED to CANCELLED)",
                |_, world: &World| !world.left_final,
            ),
            Property::always("an ended order never changes", |_, world: &World| {
                !world.order_left_final
            }),
            Property::always(
                "only a message that failed every attempt is dead-lettered",
                |model: &Self, world: &World| {
                    world
                        .parked()
                        .all(|message| message.attempts >= model.bound.attempts)
                },
            ),
            Property::always("at rest every order has ended", |_, world: &World| {
                !Self::quiescent(world)
                    || (world.order != OrderStatus::Pending
                        && matches!(
                            world.record.stage,
                            Stage::Confirmed | Stage::Rejected | Stage::Cancelled | Stage::Refunded
                        ))
            }),
            Property::always(
                "at rest a cancelled order is charged nothing",
                |_, world: &World| {
                    !Self::quiescent(world)
                        || world.order != OrderStatus::Cancelled
                        || (world.net_charged() == 0
                            && matches!(world.record.stage, Stage::Cancelled | Stage::Refunded))
                },
            ),
            Property::always(
                "at rest a confirmed order is charged once",
                |_, world: &World| {
                    !Self::quiescent(world)
                        || world.order != OrderStatus::Confirmed
                        || (world.record.stage == Stage::Confirmed
                            && world.provider.approvals == 1
                            && world.provider.refunds == 0)
                },
            ),
            Property::always(
                "at rest a rejected order is charged nothing",
                |_, world: &World| {
                    !Self::quiescent(world)
                        || world.order != OrderStatus::Rejected
                        || world.net_charged() == 0
                },
            ),
            // The model is not vacuous: each of these is reached.
            Property::sometimes("an order is confirmed", |_, world: &World| {
                Self::quiescent(world) && world.order == OrderStatus::Confirmed
            }),
            Property::sometimes(
                "a captured order is cancelled and refunded",
                |_, world: &World| {
                    Self::quiescent(world)
                        && world.order == OrderStatus::Cancelled
                        && world.provider.refunds == 1
                },
            ),
            Property::sometimes("a purged placement ends rejected", |_, world: &World| {
                Self::quiescent(world)
                    && world.order == OrderStatus::Rejected
                    && world.provider.key == Key::Voided
            }),
            Property::sometimes(
                "a lost answer is followed by a confirmation",
                |_, world: &World| {
                    Self::quiescent(world)
                        && world.order == OrderStatus::Confirmed
                        && world.messages.iter().any(|message| message.attempts > 0)
                },
            ),
        ]
    }
}

/// Runs the checker over `model` until it has looked at every state within
/// the bound (or, with `until`, found a counterexample to each of those
/// properties, on one thread so each is a shortest one).
pub(super) fn check<L: Logic>(
    model: OrderModel<L>,
    until: Option<&[&'static str]>,
) -> impl stateright::Checker<OrderModel<L>> {
    let limit = std::env::var("ORDO_MODEL_STATES")
        .ok()
        .and_then(|raw| raw.parse().ok())
        .unwrap_or(usize::MAX);
    let builder = model.checker().target_state_count(limit);
    match until {
        Some(properties) => builder
            .finish_when(stateright::HasDiscoveries::AllOf(
                properties.iter().copied().collect(),
            ))
            .spawn_bfs()
            .join(),
        None => builder.threads(2).spawn_bfs().join(),
    }
}

/// A counterexample, one step a line, with what each step left behind.
#[cfg(test)]
fn describe(path: &[(World, Option<Action>)]) -> String {
    path.windows(2)
        .filter_map(|pair| {
            let action = pair[0].1.as_ref()?;
            let world = &pair[1].0;
            Some(format!(
                "  {action:?} → record {:?}, order {:?}, charged {} refunded {}",
                world.record.stage, world.order, world.provider.approvals, world.provider.refunds
            ))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Plays `actions` from the start, each of which must be possible.
#[cfg(test)]
fn replay<L: Logic>(model: &OrderModel<L>, actions: &[Action]) -> World {
    let mut world = model.initial();
    for action in actions {
        let mut possible = Vec::new();
        model.actions(&world, &mut possible);
        assert!(
            possible.contains(action),
            "{action:?} is not possible in {world:#?}"
        );
        world = model
            .next_state(&world, action.clone())
            .unwrap_or_else(|| panic!("{action:?} changed nothing"));
    }
    world
}

#[cfg(test)]
mod tests {
    use stateright::Checker as _;

    use super::*;
    use crate::legacy::Legacy;

    #[test]
    fn the_money_invariants_hold_over_every_interleaving_within_the_bound() {
        let bound = Bound::from_env();
        let started = std::time::Instant::now();
        let checker = check(
            OrderModel {
                logic: Machine,
                bound,
            },
            None,
        );
        eprintln!(
            "model checked: {} states ({} unique) within {bound:?} in {:?}",
            checker.state_count(),
            checker.unique_state_count(),
            started.elapsed()
        );
        checker.assert_properties();
    }

    /// A cancellation arrives while the placement's authorization is slow.
    #[test]
    fn a_cancellation_during_a_slow_authorization_charged_the_old_logic_and_is_refunded_now() {
        use Action::{Advance, Answer, Cancel, Deliver, Purge};
        let legacy = OrderModel {
            logic: Legacy,
            bound: Bound::TESTED,
        };
        // The old logic deferred the cancellation until the delivery cap
        // dead-lettered it (the record with it); the approval then confirmed
        // the order; the operator's purge dropped the cancellation.
        let world = replay(
            &legacy,
            &[
                Deliver(0),
                Advance(0),
                Advance(0),
                Cancel,
                Deliver(1),
                Advance(1),
                Deliver(1),
                Advance(1),
                Advance(1),
                Answer(0, true),
                Advance(0),
                Advance(0),
                Purge(1),
                Advance(0),
                Advance(0),
            ],
        );
        assert!(OrderModel::<Legacy>::quiescent(&world), "{world:#?}");
        assert_eq!(world.order, OrderStatus::Cancelled);
        assert_eq!(world.record.stage, Stage::Confirmed);
        assert_eq!(world.net_charged(), 1, "charged for a cancelled order");

        // Now: the cancellation is recorded at once; the approval is refunded.
        let machine = OrderModel {
            logic: Machine,
            bound: Bound::TESTED,
        };
        let world = replay(
            &machine,
            &[
                Deliver(0),
                Advance(0),
                Advance(0),
                Cancel,
                Deliver(1),
                Advance(1),
                Advance(1),
                Answer(0, true),
                Advance(0),
                Advance(0),
                Answer(0, true),
                Advance(0),
                Advance(0),
            ],
        );
        assert!(OrderModel::<Machine>::quiescent(&world), "{world:#?}");
        assert_eq!(world.order, OrderStatus::Cancelled);
        assert_eq!(world.record.stage, Stage::Refunded);
        assert_eq!(world.net_charged(), 0);
    }

    #[test]
    fn the_checker_finds_the_holes_of_the_logic_it_replaced() {
        let broken = [
            "at rest a cancelled order is charged nothing",
            "only a message that failed every attempt is dead-lettered",
        ];
        let checker = check(
            OrderModel {
                logic: Legacy,
                bound: Bound::TESTED,
            },
            Some(&broken),
        );
        for property in broken {
            let path = checker
                .discovery(property)
                .unwrap_or_else(|| panic!("no counterexample to {property:?}"));
            eprintln!("{property}:\n{}", describe(&path.into_vec()));
        }
    }
}
