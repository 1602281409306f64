/// The agent's CPU budget: while its hooks are attached any tracer here costs a
/// small-packet path about a quarter of its CPU, and sampling does not help (the
/// hooks still fire), so the agent traces for a share of each period and is paused
/// for the rest. The share is sized from what tracing was measured to cost (BPF run
/// time plus the process's CPU) per second traced, so the cost stays within the
/// budget; when tracing is cheap (a quiet node) the share is 1, continuous.
///
/// Unbiased by construction: the traced stretch is one whole piece of every period,
/// placed at a random offset, never chosen by what the traffic looks like, so the
/// percentiles of the traced time are those of the period. An incident traces
/// continuously whatever the budget (`forced`).
///
/// Pure arithmetic over times and cumulative costs, so it is tested without root.
public struct DutyCycle: Sendable {
    /// CPU-seconds per second the tracing may cost (a fraction of the node's CPUs).
    public let budget: Double
    /// Seconds per period.
    public let period: Double
    /// The least share of a period traced however costly tracing is.
    public let minShare: Double

    /// The share of this period traced.
    public private(set) var share: Double = 1
    /// Seconds traced and elapsed in the last whole period (its active ratio).
    public private(set) var lastPeriodActiveRatio: Double = 1
    /// Cost per traced second measured in the last period (CPU-seconds per second).
    public private(set) var costPerTracedSecond: Double = 0

    private var periodStart: Double?
    private var onFrom = 0.0, onUntil = 0.0
    private var costAtPeriodStart = 0.0
    private var tracedThisPeriod = 0.0
    private var lastNow = 0.0
    private var lastOn = true
    private let random: @Sendable () -> Double

    /// `random()` gives a number in 0..<1 (the offset of each period's traced stretch).
    public init(budget: Double, period: Double = 10, minShare: Double = 0.02,
                random: @escaping @Sendable () -> Double = { Double.random(in: 0..<1) }) {
        precondition(budget > 0 && period > 0)
        self.budget = budget
        self.period = period
        self.minShare = minShare
        self.random = random
    }

    /// Whether the hooks should be attached at `now` (seconds, monotonic), given the
    /// cost so far (cumulative CPU-seconds; asked for only while tracing and when a
    /// period starts, as measuring it takes system calls) and whether an incident
    /// holds tracing on.
    /// Call it often (the agent: every 100 ms); the answer changes at most twice a
    /// period, plus for incidents.
    public mutating func tracing(now: Double, cost: () -> Double, forced: Bool = false) -> Bool {
        if lastOn { tracedThisPeriod += max(0, now - lastNow) }
        lastNow = now
        if periodStart == nil {
            // what tracing costs here is not known yet: the first period traces a
            // quarter of itself, the measure the next is sized from (a quiet node is
            // traced continuously from the third period on: a share grows fourfold)
            startPeriod(now: now, cost: cost(), share: 0.25)
        } else if now >= periodStart! + period {
            let elapsed = now - periodStart!, cost = cost()
            let spent = max(0, cost - costAtPeriodStart)
            lastPeriodActiveRatio = min(1, tracedThisPeriod / elapsed)
            if tracedThisPeriod > 0.01 * period {
                costPerTracedSecond = spent / tracedThisPeriod
            }
            // what the last period spent over its budget is taken off the next one's
            // (what it left unspent is not saved up beyond one period's budget):
            // the cost of pausing, resuming and draining late lands where it falls
            let overspent = max(-budget * elapsed, spent - budget * elapsed)
            var next = costPerTracedSecond > 0 ? max(0, budget * period - overspent) / (costPerTracedSecond * period) : 1
            // a share grows at most fourfold per period: a measure taken while
            // paused most of the time is a small sample
            next = min(next, 4 * share)
            startPeriod(now: now, cost: cost, share: min(1, max(minShare, next)))
        }
        // a burst after a quiet period: the share was sized for the quiet, so the
        // period's budget is enforced as it is spent, and the hooks pause once it is
        // (the cost is read only while tracing: when it is dear the stretch is short)
        if !forced && now >= onFrom && now < onUntil, cost() - costAtPeriodStart >= budget * period {
            onUntil = now
        }
        lastOn = forced || (now >= onFrom && now < onUntil)
        return lastOn
    }

    /// When the answer of `tracing` changes next if nothing is forced (seconds,
    /// monotonic): the agent wakes then, so each traced stretch is as long as sized.
    public var nextChange: Double {
        guard let start = periodStart else { return 0 }
        if lastNow < onFrom { return onFrom }
        if lastNow < onUntil { return min(onUntil, start + period) }
        return start + period
    }

    private mutating func startPeriod(now: Double, cost: Double, share: Double) {
        self.share = share
        periodStart = now
        costAtPeriodStart = cost
        tracedThisPeriod = 0
        let offset = share >= 1 ? 0 : random() * (1 - share) * period
        onFrom = now + offset
        onUntil = share >= 1 ? now + period + 1 : onFrom + share * period
    }
}
