export {
  CLOUD_PROVIDERS,
  DEFAULT_CONFIG_FILE,
  OPTION_NAMES,
  parseConfig,
  type CloudProviderName,
  type Config,
  type OptionName,
  type ParseArgs,
  type ParseResult,
  type Settings,
} from './config';
export { helpText } from './help';
