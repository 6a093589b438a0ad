// A consortium description (YAML) → the core `Consortium`, its GPU amounts resolved against a site.
//
// A GPU amount is a whole number of GPUs (`144`) or a percentage of the whole site ("12.5%"),
// rounded down to whole GPUs. A percentage is always of the site, also for lending and
// borrowing limits, so the same text means the same number of GPUs in every field.
import { z } from 'zod';
import type { Consortium, Member } from '../core/consortium.js';
import type { Site } from '../core/site.js';
import { Description, claim, nameSchema, readDescriptionFile, strictObject, type DocPath } from './document.js';

const AMOUNT_HINT = 'expected a whole number of GPUs (e.g. 144) or a percentage of the site (e.g. "12.5%")';
// Up to six decimals keeps the integer arithmetic below exact for any realistic site.
const PERCENT = /^\s*(\d+)(?:\.(\d{1,6}))?\s*%\s*$/;

const amountSchema = z.union([z.number(), z.string()], { error: AMOUNT_HINT });

const memberSchema = strictObject({
  id: z.string().regex(/^[a-z][a-z0-9-]*$/, {
    error: 'must be a lowercase id of letters, digits and - (starting with a letter)',
  }),
  name: z.string().min(1),
  entitlement: amountSchema,
  lendingLimit: amountSchema.nullish(),
  borrowingLimit: amountSchema.nullish(),
  isolation: z.enum(['none', 'required']).default('none'),
  zone: nameSchema.nullish(),
  projects: z
    .array(nameSchema)
    .nullish()
    .transform((v) => v ?? []),
});

const consortiumSchema = strictObject({
  name: nameSchema,
  fairShare: strictObject({
    // Slurm's PriorityDecayHalfLife default: a week.
    halfLifeHours: z.number().positive().default(168),
  }).prefault({}),
  members: z.array(memberSchema).min(1),
  // What member admins may book as advance reservations themselves (operators may book beyond it);
  // without the block, only operators book.
  reservations: strictObject({
    maxGpus: amountSchema.nullish(),
    maxHours: z.number().positive().nullish(),
    minNoticeHours: z.number().min(0).default(0),
    perMemberPerWeek: z.number().int().positive().nullish(),
  }).optional(),
});

type ConsortiumDocument = z.output<typeof consortiumSchema>;

/** Parses a consortium description against the site it shares; `file` names it in errors. */
export function parseConsortium(text: string, file: string, site: Site): Consortium {
  const description = Description.parse(text, file);
  return buildConsortium(description, description.validate(consortiumSchema), site);
}

/** Reads and parses a consortium description file. Throws InvalidDescriptionError. */
export function loadConsortium(path: string, site: Site): Consortium {
  return parseConsortium(readDescriptionFile(path), path, site);
}

function buildConsortium(d: Description, doc: ConsortiumDocument, site: Site): Consortium {
  const zoneGpus = new Map(site.zones.map((zone) => [zone, 0]));
  for (const domain of site.domains) zoneGpus.set(domain.zone, (zoneGpus.get(domain.zone) ?? 0) + domain.gpus);
  const idAt = new Map<string, DocPath>();

  const members = doc.members.map((m, i): Member => {
    const path = ['members', i];
    claim(d, idAt, m.id, [...path, 'id'], 'member id');
    const entitlementGpus = resolveGpus(d, m.entitlement, [...path, 'entitlement'], site);
    const lendingLimitGpus = m.lendingLimit == null ? null : resolveGpus(d, m.lendingLimit, [...path, 'lendingLimit'], site);
    const borrowingLimitGpus =
      m.borrowingLimit == null ? null : resolveGpus(d, m.borrowingLimit, [...path, 'borrowingLimit'], site);
    if (lendingLimitGpus !== null && lendingLimitGpus > entitlementGpus) {
      d.fail(
        [...path, 'lendingLimit'],
        `is ${lendingLimitGpus} GPUs, more than the entitlement of ${entitlementGpus}: a member lends only its own idle GPUs`,
      );
    }
    const zone = m.zone ?? null;
    if (zone !== null) {
      const gpus = zoneGpus.get(zone);
      if (gpus === undefined) {
        d.fail([...path, 'zone'], `zone '${zone}' is not a zone of site '${site.name}' (${site.zones.join(', ')})`);
      }
      if (entitlementGpus > gpus) {
        d.fail(
          [...path, 'entitlement'],
          `is ${entitlementGpus} GPUs, but zone '${zone}', where this member's work must run, has only ${gpus}`,
        );
      }
    }
    const projectAt = new Map<string, DocPath>();
    m.projects.forEach((project, p) => claim(d, projectAt, project, [...path, 'projects', p], 'project'));
    return {
      id: m.id,
      name: m.name,
      entitlementGpus,
      lendingLimitGpus,
      borrowingLimitGpus,
      isolation: m.isolation,
      zone,
      projects: m.projects,
    };
  });

  // Entitlements are guarantees: together they must fit the machine, and each zone.
  const total = members.reduce((sum, m) => sum + m.entitlementGpus, 0);
  if (total > site.totalGpus) {
    d.fail(['members'], `entitlements add up to ${total} GPUs, more than the ${site.totalGpus} GPUs of site '${site.name}'`);
  }
  for (const [zone, gpus] of zoneGpus) {
    const bound = members.filter((m) => m.zone === zone);
    const entitled = bound.reduce((sum, m) => sum + m.entitlementGpus, 0);
    if (entitled > gpus) {
      const ids = bound.map((m) => m.id).join(', ');
      d.fail(
        ['members'],
        `members whose work must run in zone '${zone}' (${ids}) are entitled to ${entitled} GPUs together, more than its ${gpus}`,
      );
    }
  }

  const rules = doc.reservations;
  const reservations = rules && {
    maxGpus: rules.maxGpus == null ? null : resolveGpus(d, rules.maxGpus, ['reservations', 'maxGpus'], site),
    maxHours: rules.maxHours ?? null,
    minNoticeHours: rules.minNoticeHours,
    perMemberPerWeek: rules.perMemberPerWeek ?? null,
  };
  return {
    name: doc.name,
    members,
    fairShare: { halfLifeHours: doc.fairShare.halfLifeHours },
    ...(reservations ? { reservations } : {}),
  };
}

function resolveGpus(d: Description, amount: number | string, path: DocPath, site: Site): number {
  if (typeof amount === 'number') {
    if (!Number.isInteger(amount) || amount < 0) d.fail(path, `${AMOUNT_HINT}, got ${amount}`);
    return amount;
  }
  const match = PERCENT.exec(amount);
  if (!match) return d.fail(path, `${AMOUNT_HINT}, got text "${amount}"`);
  const decimals = match[2] ?? '';
  // "12.5%" is 125 / 10 percent: whole numbers throughout, so 12.5% of 1152 is exactly 144.
  const numerator = Number(match[1] + decimals);
  const denominator = 100 * 10 ** decimals.length;
  if (numerator > denominator) d.fail(path, `is more than 100% of the site, got "${amount}"`);
  return Math.floor((numerator * site.totalGpus) / denominator);
}
