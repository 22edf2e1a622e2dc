import { evaluate, explainEvaluation, type Clock } from "@ukey/policy";
import type { HolderCertificateRow, HolderKind, HolderPreferences, ReminderRecord, Store } from "@ukey/store";
import { formatCertId } from "../cert-id.js";
import type { ProfileCache } from "../profile-cache.js";

/** Who is looking: a person sees its own certificates, an organisation its own and its members'. */
export interface BellViewer {
  id: string;
  kind: HolderKind;
}

/** A certificate as the holder's pages show it: dates, state, days left, window, in words. */
export interface HolderCertificateView {
  serial: string;
  certId: string;
  subjectDn: string;
  holderId: string;
  profileId: string;
  profileName: { "zh-CN": string; en: string } | null;
  notBefore: string;
  notAfter: string;
  status: string;
  /** On hold (冻结, revoked with reason certificateHold): suspended until the institution lifts it. */
  onHold: boolean;
  /** The web channel's renewal state (renewal-policy's evaluate). */
  state: string;
  daysToExpiry: number;
  inNotice: boolean;
  /** A newer certificate replaced it, or its renewal completed. */
  renewed: boolean;
  window: { opensAt: string | null; closesAt: string | null };
  explanation: { "zh-CN": string; en: string };
  /** The serial of the UKey the certificate was issued onto, as the agent reported it at issuance (null when unknown). */
  tokenSerial: string | null;
}

/** A reminder as the bell shows it. */
export interface BellReminderView {
  id: string;
  certificateSerial: string;
  holderId: string;
  threshold: number;
  notAfter: string;
  status: string;
  channels: string[];
  read: boolean;
  createdAt: string;
}

/** Longest look ahead for expiring certificates, whatever a profile's notice says. */
const MAX_NOTICE_DAYS = 3650;
/** Certificates expired longer than this leave the bell (they stay in the list). */
const BELL_EXPIRED_DAYS = 365;

/**
 * What the signed-in holder's bell and certificate list show. Every state
 * and date comes from the one renewal-window function (`evaluate`), as the
 * portal and the reminders use it.
 */
export class HolderBellService {
  constructor(private readonly deps: { store: Pick<Store, "reminders" | "holderPreferences" | "profiles" | "audit" | "transaction">; clock: Clock; profiles: Pick<ProfileCache, "get"> }) {}

  /**
   * Unread reminders (newest first, at most 100) and the certificates in
   * their notice period (renewable now or soon, or expired less than a
   * year ago) or on hold (the holder must hear of a hold: it stops logins
   * and renewal until the institution lifts it), earliest expiry first, at most 200.
   */
  async bell(v: BellViewer): Promise<{ unreadCount: number; unread: BellReminderView[]; expiring: HolderCertificateView[] }> {
    const now = this.deps.clock.now().getTime();
    const unread = await this.deps.store.reminders.listForViewer(v.id, { unreadOnly: true, limit: 100 });
    const rows = await this.deps.store.reminders.certificatesOf(v.id, {
      withMembers: v.kind === "organisation", liveOnly: true, withHeld: true, notAfterFrom: now - BELL_EXPIRED_DAYS * 86_400_000,
      notAfterTo: now + MAX_NOTICE_DAYS * 86_400_000, limit: 1000,
    });
    const views = await Promise.all(rows.map((r) => this.view(r, now)));
    const expiring = views.filter((c) => c.inNotice || c.onHold).slice(0, 200);
    return { unreadCount: unread.length, unread: unread.map(reminderView), expiring };
  }

  /** The viewer's certificates (an organisation's: with its members'), earliest expiry first. */
  async certificates(v: BellViewer, page: { limit?: number; offset?: number } = {}): Promise<HolderCertificateView[]> {
    const now = this.deps.clock.now().getTime();
    const rows = await this.deps.store.reminders.certificatesOf(v.id, { withMembers: v.kind === "organisation", limit: page.limit ?? 100, offset: page.offset ?? 0 });
    return Promise.all(rows.map((r) => this.view(r, now)));
  }

  /** Marks reminders read (the given ids of the viewer's, or all of them). Returns how many changed. */
  async markRead(v: BellViewer, ids: readonly string[] | null): Promise<number> {
    return this.deps.store.reminders.markRead(v.id, ids, this.deps.clock.now().getTime());
  }

  /** The holder's reminder channels. */
  async preferences(holderId: string): Promise<HolderPreferences> {
    return this.deps.store.holderPreferences.get(holderId);
  }

  /**
   * Changes the holder's reminder channels, audited as `holder.preferences-changed` by `actor`.
   * @throws UkeyError HOLDER_NOT_FOUND.
   */
  async setPreferences(holderId: string, p: { sms: boolean; email: boolean }, actor: string): Promise<HolderPreferences> {
    const at = this.deps.clock.now().getTime();
    return this.deps.store.transaction(async (r) => {
      const before = await r.holderPreferences.get(holderId);
      const after = await r.holderPreferences.put({ holderId, smsReminders: p.sms, emailReminders: p.email }, at);
      await r.audit.append({
        at, actor, action: "holder.preferences-changed", subjectType: "holder", subjectId: holderId,
        data: { before: { sms: before.smsReminders, email: before.emailReminders }, after: p },
      });
      return after;
    });
  }

  private async view(r: HolderCertificateRow, now: number): Promise<HolderCertificateView> {
    const profile = await this.deps.profiles.get(r.profileId);
    const rules = profile ?? { renewal: { windows: { web: null, mobile: null, cli: null, est: null }, noticeDaysBefore: 0, stepUp: null, loginWhenExpired: false, onCompletion: "leave-to-expire" as const } };
    const e = evaluate({ notBefore: r.notBefore, notAfter: r.notAfter, status: r.status as never, revokedAt: r.revokedAt, revocationReason: r.revocationReason }, rules, "web", new Date(now));
    return {
      serial: r.serial, certId: formatCertId(r.issuerKeyId, r.serial), subjectDn: r.subjectDn, holderId: r.holderId, profileId: r.profileId,
      profileName: profile?.name ?? null, notBefore: new Date(r.notBefore).toISOString(), notAfter: new Date(r.notAfter).toISOString(), status: r.status,
      onHold: r.status === "revoked" && r.revocationReason === "certificateHold",
      state: e.state, daysToExpiry: e.daysToExpiry, inNotice: e.inNotice && !r.renewed, renewed: r.renewed,
      window: { opensAt: e.opensAt?.toISOString() ?? null, closesAt: e.closesAt?.toISOString() ?? null },
      explanation: { "zh-CN": explainEvaluation(e, "zh-CN"), en: explainEvaluation(e, "en") },
      tokenSerial: r.tokenSerial,
    };
  }
}

function reminderView(r: ReminderRecord): BellReminderView {
  return {
    id: r.id, certificateSerial: r.certificateSerial, holderId: r.holderId, threshold: r.threshold, notAfter: new Date(r.notAfter).toISOString(),
    status: r.status, channels: r.delivered, read: r.readAt !== null, createdAt: new Date(r.createdAt).toISOString(),
  };
}
