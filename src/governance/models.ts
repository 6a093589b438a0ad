// Model versions: what a job's output inherits from its data (restrictions), where it came from
// (lineage: datasets → agreements → job → placement → model) and its card, generated from the
// platform's records plus what people fill in, with the technical documentation of the EU AI Act
// (Article 53(1)(a), Annex XI sections 1 and 2) the platform can answer. Pure functions: the
// routes gather the records, these decide.
import { z } from 'zod';
import type { GpuModel } from '../core/site.js';
import { CLASSIFICATION_RANK, qualified, type Agreement, type Classification, type Dataset } from './model.js';
import { isoTime } from '../api/contract.js';

/** What a model may be used for, where, and whether it may leave the factory. */
export interface Restrictions {
  readonly classification: Classification;
  /** Purposes every agreement permits; null: no agreement limits it (the member's own data only). */
  readonly purposes: readonly string[] | null;
  /** Zones every dataset and agreement allows; null: trained on no dataset, so no zone limit. */
  readonly zones: readonly string[] | null;
  readonly noExport: boolean;
}

/** A model of one's own work on no declared data is still the member's, not public. */
export const BASE_CLASSIFICATION: Classification = 'internal';

const intersect = (sets: readonly (readonly string[])[]): string[] | null =>
  sets.length === 0 ? null : [...new Set(sets[0])].filter((x) => sets.every((s) => s.includes(x))).sort();

/**
 * The restrictions a model inherits: the highest classification of its datasets and of what its
 * agreements say they produce, the purposes all agreements permit, the zones all datasets and
 * agreements allow, and no export if any agreement forbids it. Never weaker than any one input.
 */
export function modelRestrictions(datasets: readonly Dataset[], agreements: readonly Agreement[]): Restrictions {
  const levels: Classification[] = [
    BASE_CLASSIFICATION,
    ...datasets.map((d) => d.classification),
    ...agreements.map((a) => a.produces),
  ];
  const classification = levels.reduce((hi, c) => (CLASSIFICATION_RANK[c] > CLASSIFICATION_RANK[hi] ? c : hi));
  return {
    classification,
    purposes: intersect(agreements.map((a) => a.purposes)),
    zones: intersect([...datasets.map((d) => d.zones), ...agreements.map((a) => a.zones)]),
    noExport: agreements.some((a) => a.noExport),
  };
}

/** The agreements a job used a dataset under: those naming it for the job's member or project and purpose. */
export function agreementsUsed(
  job: { member: string; project: string; purpose: string | null },
  datasets: readonly Dataset[],
  agreements: readonly Agreement[],
): Agreement[] {
  const used = new Map<string, Agreement>();
  for (const d of datasets) {
    if (d.owner === job.member) continue;
    // An agreement grants its grantor's datasets: another member's agreement naming an id like
    // this one is about another dataset.
    const naming = agreements.filter(
      (a) =>
        a.grantor === d.owner &&
        a.datasets.includes(d.id) &&
        (a.grantee === job.member || a.grantee === `${job.member}/${job.project}`),
    );
    // Admission allowed the job under an agreement for its purpose; if none says so any more, all
    // that named the dataset for it count: lineage errs towards more restriction, never less.
    const forPurpose = naming.filter((a) => job.purpose !== null && a.purposes.includes(job.purpose));
    for (const a of forPurpose.length > 0 ? forPurpose : naming) used.set(qualified(a.grantor, a.id), a);
  }
  return [...used.values()].sort((a, b) => a.id.localeCompare(b.id) || a.grantor.localeCompare(b.grantor));
}

export interface Lineage {
  readonly datasets: readonly {
    id: string;
    owner: string;
    classification: Classification;
    zones: readonly string[];
    location: string;
  }[];
  readonly agreements: readonly {
    id: string;
    grantor: string;
    grantee: string;
    datasets: readonly string[];
    purposes: readonly string[];
    zones: readonly string[];
    produces: Classification;
    noExport: boolean;
    expiresAt: number;
    approvedAt: number | null;
    approvedBy: string | null;
    revokedAt: number | null;
  }[];
  readonly job: {
    id: string;
    member: string;
    project: string;
    user: string;
    purpose: string | null;
    gpus: number;
    submittedAt: number;
    startedAt: number | null;
    endedAt: number | null;
  };
  readonly placement: { zone: string | null; nodes: readonly { node: string; gpus: number; domain: string | null }[] };
  readonly model: { name: string; version: string; artifact: string };
}

export function buildLineage(o: {
  datasets: readonly Dataset[];
  agreements: readonly Agreement[];
  job: Lineage['job'];
  placement: Lineage['placement'];
  model: Lineage['model'];
}): Lineage {
  return {
    datasets: o.datasets.map((d) => ({
      id: d.id,
      owner: d.owner,
      classification: d.classification,
      zones: [...d.zones],
      location: d.location,
    })),
    agreements: o.agreements.map((a) => ({
      id: a.id,
      grantor: a.grantor,
      grantee: a.grantee,
      datasets: [...a.datasets],
      purposes: [...a.purposes],
      zones: [...a.zones],
      produces: a.produces,
      noExport: a.noExport,
      expiresAt: a.expiresAt,
      approvedAt: a.approvedAt,
      approvedBy: a.approvedBy,
      revokedAt: a.revokedAt,
    })),
    job: o.job,
    placement: o.placement,
    model: o.model,
  };
}

/** What people fill in. Everything optional: a field left out is "to be completed by the provider". */
const text = (max = 8192) => z.string().min(1).max(max);
const CARD_FIELDS = {
  description: text(),
  intendedUse: text(),
  limitations: text(),
  evaluation: text(),
  /** Annex XI 1(a): the tasks it is meant for and the systems it may be integrated into. */
  intendedTasks: text(),
  /** Annex XI 1(b). */
  acceptableUsePolicy: text(),
  /** Annex XI 1(c). */
  releaseDate: z.iso.date(),
  distribution: text(),
  /** Annex XI 1(d). */
  architecture: text(),
  parameters: z.number().int().positive(),
  /** Annex XI 1(e). */
  inputModalities: text(1024),
  outputModalities: text(1024),
  /** Annex XI 1(f). */
  licence: text(1024),
  /** Annex XI 2(a): design specification, training methodology, key design choices. */
  trainingProcess: text(),
  /** Annex XI 2(c): how the data was obtained, selected and curated (cleaning, filtering). */
  dataCuration: text(),
};
type Fields = typeof CARD_FIELDS;
const mapFields = <T>(f: (s: z.ZodType) => z.ZodType) =>
  Object.fromEntries(Object.entries(CARD_FIELDS).map(([k, v]) => [k, f(v)])) as T;
/** What people fill in. Everything optional: a field left out is "to be completed by the provider". */
export const CardFields = z.strictObject(mapFields<{ [K in keyof Fields]: z.ZodOptional<Fields[K]> }>((s) => s.optional()));
export type CardFields = z.output<typeof CardFields>;
/** A PATCH: a field set to null is cleared. */
export const CardPatch = z.strictObject(
  mapFields<{ [K in keyof Fields]: z.ZodOptional<z.ZodNullable<Fields[K]>> }>((s) => s.nullable().optional()),
);
export type CardPatch = z.output<typeof CardPatch>;

export function patchCard(card: CardFields, patch: CardPatch): CardFields {
  const out: Record<string, unknown> = { ...card };
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined) continue;
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out as CardFields;
}

/** Dense BF16 peaks (TFLOP/s per GPU) of the GPUs Fabrik knows, for sites that do not state theirs. */
const KNOWN_PEAKS: readonly [RegExp, number][] = [
  [/GB300|B300|Blackwell Ultra/i, 2500],
  [/GB200|B200/i, 2500],
  [/H200|H100/i, 989],
  [/A100/i, 312],
];
export const ASSUMED_UTILISATION = 0.4;
/** Article 51(2): a general-purpose model trained with more than this is presumed to have high-impact capabilities. */
export const SYSTEMIC_RISK_FLOPS = 1e25;
export const TO_BE_COMPLETED = 'to be completed by the provider';

export function peakTflops(gpu: GpuModel): { tflops: number | null; source: string } {
  if (gpu.peakDenseBf16Tflops !== undefined) return { tflops: gpu.peakDenseBf16Tflops, source: 'the site description' };
  const known = KNOWN_PEAKS.find(([re]) => re.test(gpu.name));
  return known ? { tflops: known[1], source: `Fabrik's figure for ${gpu.name}` } : { tflops: null, source: 'unknown GPU' };
}

export interface CardSite {
  readonly name: string;
  readonly gpu: GpuModel;
  readonly pue: number;
  readonly carbonGramsPerKwh: number;
}

export interface ModelRecord {
  readonly name: string;
  readonly version: string;
  readonly member: string;
  readonly jobId: string;
  readonly artifact: string;
  readonly restrictions: Restrictions;
  readonly lineage: Lineage;
  /** Members whose data it was trained on (besides its own). */
  readonly grantors: readonly string[];
  readonly card: CardFields;
  readonly createdAt: number;
  readonly createdBy: string;
  readonly cardUpdatedAt: number | null;
  readonly cardUpdatedBy: string | null;
}

/** A card entry: what it says, and who answered it (the platform's records, or the provider). */
export interface Entry {
  readonly value: unknown;
  readonly source: 'platform' | 'provider' | 'missing';
}

const round = (x: number, digits = 3) => Number(x.toPrecision(digits + 3));

export function modelCard(m: ModelRecord, site: CardSite) {
  const j = m.lineage.job;
  const hours = j.startedAt !== null && j.endedAt !== null ? Math.max(0, j.endedAt - j.startedAt) / 3600 : 0;
  const gpuHours = hours * j.gpus;
  const peak = peakTflops(site.gpu);
  const flops = peak.tflops === null ? null : gpuHours * 3600 * peak.tflops * 1e12 * ASSUMED_UTILISATION;
  const kwh = (gpuHours * site.gpu.watts * site.pue) / 1000;
  const provider = (key: keyof CardFields): Entry =>
    m.card[key] !== undefined ? { value: m.card[key], source: 'provider' } : { value: TO_BE_COMPLETED, source: 'missing' };
  const platform = (value: unknown): Entry => ({ value, source: 'platform' });
  const data = {
    datasets: m.lineage.datasets.map((d) => ({ id: d.id, owner: d.owner, classification: d.classification, zones: d.zones })),
    agreements: m.lineage.agreements.map((a) => ({
      id: a.id,
      grantor: a.grantor,
      grantee: a.grantee,
      purposes: a.purposes,
      produces: a.produces,
      noExport: a.noExport,
      expires: isoTime(a.expiresAt),
    })),
  };
  const compute = {
    gpuHours: round(gpuHours),
    gpus: j.gpus,
    gpuModel: site.gpu.name,
    trainingSeconds: Math.round(hours * 3600),
    flops: {
      estimate: flops === null ? null : Number(flops.toPrecision(3)),
      estimated: true,
      assumptions: {
        peakDenseBf16TflopsPerGpu: peak.tflops,
        peakSource: peak.source,
        utilisation: ASSUMED_UTILISATION,
        formula: 'GPU-hours × 3600 × peak dense BF16 FLOP/s per GPU × utilisation',
      },
      aboveSystemicRiskThreshold: flops === null ? null : flops > SYSTEMIC_RISK_FLOPS,
    },
  };
  const energy = {
    kwh: round(kwh),
    estimated: true,
    assumptions: {
      gpuWatts: site.gpu.watts,
      pue: site.pue,
      formula: 'GPU-hours × GPU watts × PUE / 1000; GPUs at their rated power, the rest of the facility through the PUE',
    },
    co2eKg: round((kwh * site.carbonGramsPerKwh) / 1000),
    carbonGramsPerKwh: site.carbonGramsPerKwh,
  };
  return {
    model: {
      name: m.name,
      version: m.version,
      member: m.member,
      artifact: m.artifact,
      registeredAt: isoTime(m.createdAt),
      registeredBy: m.createdBy,
    },
    restrictions: m.restrictions,
    training: {
      job: j.id,
      project: j.project,
      purpose: j.purpose,
      site: site.name,
      zone: m.lineage.placement.zone,
      nodes: m.lineage.placement.nodes.map((n) => n.node),
      submittedAt: isoTime(j.submittedAt),
      startedAt: isoTime(j.startedAt),
      endedAt: isoTime(j.endedAt),
      note: 'GPU-hours run from the last start to the end; a run before a requeue is not counted',
    },
    compute,
    energy,
    data,
    provided: {
      description: provider('description'),
      intendedUse: provider('intendedUse'),
      limitations: provider('limitations'),
      evaluation: provider('evaluation'),
    },
    euAiAct: {
      reference: 'Regulation (EU) 2024/1689, Article 53(1)(a) and Annex XI',
      section1: {
        generalDescription: provider('description'),
        intendedTasks: provider(m.card.intendedTasks !== undefined ? 'intendedTasks' : 'intendedUse'),
        acceptableUsePolicy: provider('acceptableUsePolicy'),
        releaseDate: provider('releaseDate'),
        distributionMethods: provider('distribution'),
        architecture: provider('architecture'),
        parameters: provider('parameters'),
        inputModalities: provider('inputModalities'),
        outputModalities: provider('outputModalities'),
        licence: provider('licence'),
      },
      section2: {
        designAndTrainingProcess: provider('trainingProcess'),
        trainingData: platform({
          type: 'datasets registered in Fabrik',
          provenance: data.datasets.map((d) => ({
            dataset: d.id,
            owner: d.owner,
            classification: d.classification,
            // The agreements of its owner that name it: ids are each member's own.
            agreements: m.lineage.agreements.filter((a) => a.grantor === d.owner && a.datasets.includes(d.id)).map((a) => a.id),
          })),
        }),
        dataCuration: provider('dataCuration'),
        computationalResources: platform({
          flops: compute.flops.estimate,
          flopsEstimated: true,
          trainingTime: `${round(hours)} h on ${j.gpus} × ${site.gpu.name}`,
          gpuHours: compute.gpuHours,
        }),
        energyConsumption: platform({ kwh: energy.kwh, estimated: true, method: energy.assumptions.formula }),
      },
    },
  };
}
export type ModelCard = ReturnType<typeof modelCard>;

const show = (e: Entry) =>
  e.source === 'missing' ? `_${TO_BE_COMPLETED}_` : typeof e.value === 'string' ? e.value : JSON.stringify(e.value);
const list = (xs: readonly string[] | null, none: string) => (xs === null ? none : xs.length === 0 ? '(none)' : xs.join(', '));

export function cardMarkdown(c: ModelCard): string {
  const s1 = c.euAiAct.section1;
  const s2 = c.euAiAct.section2;
  const f = c.compute.flops;
  const lines = [
    `# Model card: ${c.model.name} ${c.model.version}`,
    '',
    `Member: ${c.model.member} · registered ${c.model.registeredAt} by ${c.model.registeredBy} · artifact \`${c.model.artifact}\``,
    '',
    '## Restrictions (inherited from its data)',
    '',
    `- Classification: **${c.restrictions.classification}**`,
    `- Permitted purposes: ${list(c.restrictions.purposes, 'not limited by any agreement')}`,
    `- Zones: ${list(c.restrictions.zones, 'not limited')}`,
    `- Export: ${c.restrictions.noExport ? 'never (an agreement says noExport)' : c.restrictions.classification === 'restricted' ? 'with two approvers (two-person rule)' : 'allowed'}`,
    '',
    '## Intended use, limitations, evaluation',
    '',
    `- Description: ${show(c.provided.description)}`,
    `- Intended use: ${show(c.provided.intendedUse)}`,
    `- Limitations: ${show(c.provided.limitations)}`,
    `- Evaluation: ${show(c.provided.evaluation)}`,
    '',
    '## Training',
    '',
    `- Job ${c.training.job} (project ${c.training.project}, purpose ${c.training.purpose ?? '(none)'}) on site ${c.training.site}, zone ${c.training.zone ?? '(any)'}`,
    `- Nodes: ${c.training.nodes.join(', ') || '(none recorded)'}`,
    `- Submitted ${c.training.submittedAt}, started ${c.training.startedAt}, ended ${c.training.endedAt}`,
    `- GPU-hours: ${c.compute.gpuHours} (${c.compute.gpus} × ${c.compute.gpuModel}; ${c.training.note})`,
    `- Training compute (estimate): ${f.estimate === null ? 'unknown (no peak figure for this GPU)' : `${f.estimate.toExponential(2)} FLOPs`}, assuming ${f.assumptions.peakDenseBf16TflopsPerGpu ?? '?'} TFLOP/s dense BF16 per GPU (${f.assumptions.peakSource}) at ${f.assumptions.utilisation * 100}% utilisation`,
    `- Energy (estimate): ${c.energy.kwh} kWh (${c.energy.assumptions.gpuWatts} W per GPU × PUE ${c.energy.assumptions.pue}); about ${c.energy.co2eKg} kg CO2e at ${c.energy.carbonGramsPerKwh} g/kWh`,
    '',
    '## Data',
    '',
    '| dataset | owner | classification | zones |',
    '|---|---|---|---|',
    ...c.data.datasets.map((d) => `| ${d.id} | ${d.owner} | ${d.classification} | ${d.zones.join(', ')} |`),
    '',
    '| agreement | grantor | grantee | purposes | produces | no export | expires |',
    '|---|---|---|---|---|---|---|',
    ...c.data.agreements.map(
      (a) =>
        `| ${a.id} | ${a.grantor} | ${a.grantee} | ${a.purposes.join(', ')} | ${a.produces} | ${a.noExport ? 'yes' : 'no'} | ${a.expires} |`,
    ),
    '',
    `## EU AI Act technical documentation (${c.euAiAct.reference})`,
    '',
    '### Annex XI, section 1: general description',
    '',
    `- (a) General description: ${show(s1.generalDescription)}`,
    `- (a) Intended tasks: ${show(s1.intendedTasks)}`,
    `- (b) Acceptable use policies: ${show(s1.acceptableUsePolicy)}`,
    `- (c) Release date: ${show(s1.releaseDate)}`,
    `- (c) Distribution methods: ${show(s1.distributionMethods)}`,
    `- (d) Architecture: ${show(s1.architecture)}`,
    `- (d) Number of parameters: ${show(s1.parameters)}`,
    `- (e) Input modalities and format: ${show(s1.inputModalities)}`,
    `- (e) Output modalities and format: ${show(s1.outputModalities)}`,
    `- (f) Licence: ${show(s1.licence)}`,
    '',
    '### Annex XI, section 2: development process',
    '',
    `- (a) Design specification and training process: ${show(s2.designAndTrainingProcess)}`,
    `- (c) Training data: ${c.data.datasets.length} dataset(s) registered in Fabrik (${c.data.datasets.map((d) => `${d.id} from ${d.owner}`).join(', ') || 'none declared'}), used under ${c.data.agreements.map((a) => a.id).join(', ') || 'no agreement (own data)'}`,
    `- (c) Data curation: ${show(s2.dataCuration)}`,
    `- (d) Computational resources: ${f.estimate === null ? 'unknown' : `${f.estimate.toExponential(2)} FLOPs (estimate)`}, ${c.compute.gpuHours} GPU-hours, training time ${(c.compute.trainingSeconds / 3600).toFixed(2)} h${f.aboveSystemicRiskThreshold ? ' — above the 10^25 FLOPs presumption of Article 51(2)' : ''}`,
    `- (e) Energy consumption: ${c.energy.kwh} kWh (estimate: ${c.energy.assumptions.formula})`,
    '',
    `Fields marked _${TO_BE_COMPLETED}_ are the provider's to fill (PATCH /v1/models/${c.model.name}/versions/${c.model.version}/card).`,
    '',
  ];
  return lines.join('\n');
}
