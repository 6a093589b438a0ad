// Site and consortium descriptions: YAML files an operator writes, loaded into the core types.
export { loadSite, parseSite } from './site.js';
export { loadConsortium, parseConsortium } from './consortium.js';
export {
  checkGatewayMembers,
  InvalidEnvironmentError,
  loadServerConfig,
  mergeServerConfig,
  serverConfigFromEnv,
  type ServerFileConfig,
} from './server.js';
